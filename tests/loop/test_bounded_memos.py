"""The ext_authz translation memos hold short texts only: what clients send cannot grow them by size."""

from __future__ import annotations

from policy.servers import envoy_attributes as translation


def _held() -> int:
    memos = (translation._queries, translation._spiffe, translation._ips)
    return sum(len(key) for memo in memos for key in memo)


def test_long_query_strings_and_principals_are_parsed_but_never_kept():
    before = _held()
    for i in range(200):
        long_query = f"id={i}&q=" + "v" * 65536
        assert translation.query_params(long_query)["id"] == str(i)
        principal = f"spiffe://cluster.local/ns/shop/sa/{i}" + "x" * 65536
        assert translation.parse_spiffe(principal) == ("shop", f"{i}" + "x" * 65536)
    assert _held() - before < 200 * 1024  # was 200 * 128 KiB: every long text was kept


def test_short_texts_are_still_memoized_and_the_memo_is_bounded():
    translation.query_params("a=1&b=2")
    assert "a=1&b=2" in translation._queries
    for i in range(translation._MEMO_LIMIT + 10):
        translation.query_params(f"n={i}")
    assert len(translation._queries) <= translation._MEMO_LIMIT
