// Non-variadic wrappers around libcurl's variadic setopt/getinfo calls, which Swift cannot call.
#ifndef USAGEBILLING_CCURL_SHIM_H
#define USAGEBILLING_CCURL_SHIM_H

#include <curl/curl.h>

typedef size_t (*ub_curl_data_callback)(char *ptr, size_t size, size_t nmemb, void *userdata);

static inline CURLcode ub_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ub_easy_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ub_easy_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ub_easy_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ub_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ub_easy_setopt_callback(CURL *h, CURLoption o, ub_curl_data_callback v) { return curl_easy_setopt(h, o, v); }

static inline CURLcode ub_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ub_easy_getinfo_pointer(CURL *h, CURLINFO i, char **v) { return curl_easy_getinfo(h, i, v); }

static inline CURLMcode ub_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }

#endif
