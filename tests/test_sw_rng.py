"""The stochastic-rounding generator: the spec's hash, key derivation and word order."""

import numpy as np

from fxbp.sw.rng import SITE_CODES, hash32, random_words, site_id, site_key

M = 0xFFFFFFFF


def spec_hash(a: int) -> int:
    """docs/datapath.md, "Random bits", transcribed independently."""
    a = ((a + 0x7ED55D16) + (a << 12)) & M
    a = ((a ^ 0xC761C23C) ^ (a >> 19)) & M
    a = ((a + 0x165667B1) + (a << 5)) & M
    a = ((a + 0xD3A2646C) ^ (a << 9)) & M
    a = ((a + 0xFD7046C5) + (a << 3)) & M
    a = ((a ^ 0xB55A4F09) ^ (a >> 16)) & M
    return a


def test_hash_matches_spec():
    for x in [0, 1, 2, 0x7FFFFFFF, 0x80000000, M, 123456789, 0xDEADBEEF]:
        assert int(hash32(x)) == spec_hash(x)


def test_hash_uses_low_32_bits():
    assert int(hash32((1 << 40) + 5)) == spec_hash(5)


def test_hash_is_a_bijection_on_a_block():
    words = random_words(0, 0, 0, 1 << 16)
    assert len(np.unique(words)) == 1 << 16


def test_key_and_word_order():
    seed, step, site = 42, 7, site_id(2, "weight_update")
    key = spec_hash(spec_hash(spec_hash(seed) ^ step) ^ site)
    assert int(site_key(seed, step, site)) == key
    words = random_words(seed, step, site, 10)
    assert words.tolist() == [spec_hash(key ^ i) for i in range(10)]


def test_site_ids_are_distinct():
    ids = {site_id(l, s) for l in range(1, 5) for s in SITE_CODES}
    assert len(ids) == 4 * len(SITE_CODES)
    assert site_id(3, "delta") == (3 << 8) | SITE_CODES["delta"]


def test_words_look_uniform():
    w = random_words(3, 1, site_id(1, "gradient"), 1 << 18).astype(np.float64) / 2**32
    # Mean and variance of U(0,1) within 6 standard errors.
    n = w.size
    assert abs(w.mean() - 0.5) < 6 * np.sqrt(1 / 12 / n)
    assert abs(w.var() - 1 / 12) < 6 * np.sqrt(1 / 180 / n)
    # Each of the top 8 bits is set about half the time.
    top = (random_words(3, 1, 5, 1 << 16) >> 24).astype(np.int64)
    for bit in range(8):
        frac = np.mean((top >> bit) & 1)
        assert abs(frac - 0.5) < 6 * np.sqrt(0.25 / top.size)


def test_step_keys_equal_site_keys():
    from fxbp.sw.rng import step_keys
    sites = np.array([site_id(l, s) for l in (1, 2, 3) for s in SITE_CODES], dtype=np.int64)
    keys = step_keys(99, 12345, sites)
    assert keys.tolist() == [int(site_key(99, 12345, int(s))) for s in sites]
