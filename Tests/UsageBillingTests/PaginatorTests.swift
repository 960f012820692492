import Foundation
import Testing
import UsageBilling

/// The one page loop every provider list goes through: pages in order until the last, and the
/// two guards (a repeated token, a list that never ends) as errors naming the list.
@Suite("Paginator")
struct PaginatorTests {
    @Test func readsEveryPageInOrderUntilTheLast() async throws {
        let asked = Locked<[Int?]>([])
        let items = try await PaginatorSequence<Int, String>("test list") { token in
            asked.with { $0.append(token) }
            let page = token ?? 0
            return (["\(page)a", "\(page)b"], page < 2 ? page + 1 : nil)
        }.all()
        #expect(items == ["0a", "0b", "1a", "1b", "2a", "2b"])
        #expect(asked.current == [nil, 1, 2])
    }

    @Test func aStartTokenIsTheFirstPage() async throws {
        let pages = PaginatorSequence<String, String>("links", start: "/p1") { url in
            (["at \(url ?? "?")"], url == "/p1" ? "/p2" : nil)
        }
        var seen: [[String]] = []
        for try await page in pages { seen.append(page) }
        #expect(seen == [["at /p1"], ["at /p2"]])
    }

    @Test func aRepeatedTokenIsALoopNotAPage() async throws {
        await #expect {
            _ = try await PaginatorSequence<String, Int>("looping list") { token in ([1], token == nil ? "a" : "a") }
                .all()
        } throws: { ($0 as? UsageBillingError)?.code == .unexpectedResponse && "\($0)".contains("looping list") }
    }

    @Test func aListThatNeverEndsStopsAtTheBound() async throws {
        await #expect {
            _ = try await PaginatorSequence<Int, Int>("endless list", maxPages: 5) { token in ([0], (token ?? 0) + 1) }
                .all()
        } throws: { ($0 as? UsageBillingError)?.code == .unexpectedResponse && "\($0)".contains("after 5 pages") }
    }
}
