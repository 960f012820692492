import Foundation

/// The pages of a provider's list API, as an `AsyncSequence` of pages.
///
/// `fetch` reads one page from a token (nil or `start` for the first) and returns its items and
/// the next page's token, nil on the last page. Every list the adapters read (Stripe's
/// `starting_after`, Orb's and Metronome's cursors, Chargebee's `next_offset`, Recurly's and
/// Paddle's `next` links) is this loop; the guards live here once:
/// - a token the list already gave is a loop on the provider's side, not a page to read again;
/// - past `maxPages` the list is taken to never end, rather than read for ever.
/// Both throw `.unexpectedResponse` naming `what`.
public struct PaginatorSequence<Token: Sendable & Hashable, Item: Sendable>: AsyncSequence, Sendable {
    public typealias Element = [Item]
    public typealias Page = (items: [Item], next: Token?)

    let start: Token?
    let what: String
    let maxPages: Int
    let fetch: @Sendable (Token?) async throws -> Page

    /// Pages from `start` (nil: the list's first page), each read by `fetch`.
    public init(
        _ what: String, start: Token? = nil, maxPages: Int = 10_000,
        fetch: @escaping @Sendable (Token?) async throws -> Page
    ) {
        self.start = start
        self.what = what
        self.maxPages = maxPages
        self.fetch = fetch
    }

    /// Every item of every page, in order.
    public func all() async throws -> [Item] {
        var items: [Item] = []
        for try await page in self { items += page }
        return items
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(sequence: self) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        /// Where the walk is: the next token to read (nil at the start), or past the last page.
        enum State { case next(Token?), done }
        let sequence: PaginatorSequence
        var state: State
        var seen: Set<Token> = []
        var pages = 0

        init(sequence: PaginatorSequence) {
            self.sequence = sequence
            self.state = .next(sequence.start)
        }

        public mutating func next() async throws -> [Item]? {
            guard case .next(let token) = state else { return nil }
            guard pages < sequence.maxPages else {
                state = .done
                throw UsageBillingError(
                    .unexpectedResponse, "\(sequence.what) kept giving a next page after \(sequence.maxPages) pages",
                    fix: "narrow the range or the filters; if it persists, the provider's list is looping")
            }
            pages += 1
            let page = try await sequence.fetch(token)
            if let next = page.next {
                guard seen.insert(next).inserted, next != sequence.start else {
                    state = .done
                    throw UsageBillingError(
                        .unexpectedResponse, "\(sequence.what) gave the page token \(next) twice",
                        fix: "the provider's list is looping; retry later")
                }
                state = .next(next)
            } else {
                state = .done
            }
            return page.items
        }
    }
}
