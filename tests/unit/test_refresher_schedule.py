"""Refresh timing and backoff: pure functions, no clocks."""

from __future__ import annotations

import pytest

from kubeload.refresher.schedule import (
    Backoff,
    RefreshBefore,
    parse_refresh_before,
    refresh_at,
    retry_delay,
)


def test_percent_refresh_before() -> None:
    before = parse_refresh_before("20%")
    assert before == RefreshBefore(fraction=0.2)
    # A 2 s token obtained at t=100 is refreshed when 20 % (0.4 s) is left.
    assert refresh_at(100.0, 102.0, before) == pytest.approx(101.6)
    # A one-hour token: 12 minutes before expiry.
    assert refresh_at(0.0, 3600.0, before) == pytest.approx(2880.0)


def test_duration_refresh_before() -> None:
    before = parse_refresh_before("30s")
    assert before == RefreshBefore(seconds=30.0)
    assert refresh_at(0.0, 300.0, before) == pytest.approx(270.0)
    assert parse_refresh_before("1m30s").seconds == 90.0
    assert parse_refresh_before("12.5%").fraction == pytest.approx(0.125)


def test_refresh_before_longer_than_lifetime_waits_half_the_lifetime() -> None:
    # 30 s before expiry of a 10 s token would mean "now", again and again: half instead.
    assert refresh_at(0.0, 10.0, parse_refresh_before("30s")) == pytest.approx(5.0)
    assert refresh_at(0.0, 10.0, parse_refresh_before("90%")) == pytest.approx(5.0)


def test_token_without_lifetime_is_refreshed_at_once() -> None:
    assert refresh_at(50.0, 50.0, parse_refresh_before("20%")) == 50.0
    assert refresh_at(50.0, 40.0, parse_refresh_before("20%")) == 50.0


@pytest.mark.parametrize("text", ["abc", "20", "101%", "%", "-5s"])
def test_invalid_refresh_before(text: str) -> None:
    with pytest.raises(ValueError):
        parse_refresh_before(text)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    backoff = Backoff(base=0.5, cap=8.0, jitter=0.0)
    assert [backoff.delay(n, 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.delay(10_000, 0.0) == 8.0  # no overflow for huge attempt numbers


def test_backoff_jitter_stays_within_bounds() -> None:
    backoff = Backoff(base=1.0, cap=30.0, jitter=0.5)
    assert backoff.delay(2, 0.0) == 4.0
    assert backoff.delay(2, 0.999999) == pytest.approx(2.0, abs=1e-5)
    delays = {backoff.delay(3, r / 10) for r in range(10)}
    assert len(delays) == 10 and all(4.0 <= d <= 8.0 for d in delays)


def test_retry_never_sleeps_through_the_expiry() -> None:
    backoff = Backoff(base=1.0, cap=30.0, jitter=0.0)
    # 10 s left: a 16 s backoff is cut to half the time left.
    assert retry_delay(backoff, 4, 0.0, now=100.0, expires_at=110.0) == 5.0
    # Close to the expiry the tries get denser but not below 50 ms apart.
    assert retry_delay(backoff, 4, 0.0, now=100.0, expires_at=100.02) == 0.05
    # Short backoff stays as is.
    assert retry_delay(backoff, 0, 0.0, now=100.0, expires_at=110.0) == 1.0


def test_retry_after_expiry_or_without_token_is_plain_backoff() -> None:
    backoff = Backoff(base=1.0, cap=30.0, jitter=0.0)
    assert retry_delay(backoff, 4, 0.0, now=100.0, expires_at=90.0) == 16.0
    assert retry_delay(backoff, 4, 0.0, now=100.0, expires_at=None) == 16.0
