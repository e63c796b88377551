"""``lookout bench relay`` runs end to end (few events): both stores, two relays, figures printed."""

from __future__ import annotations

import pytest

from lookout.relay.bench import print_figures, run_bench

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.slow]


def test_bench_prints_each_store_and_relay_count_side_by_side(pg_cluster, capsys):
    figures = run_bench(events=200, rate=100, seconds=1, runs=1, stores=("sqlite", "postgresql"), relay_counts=(1, 2))
    setups = [(s["store"], s["relays"]) for s in figures["setups"]]
    assert setups == [("sqlite", 1), ("sqlite", 2), ("postgresql", 1), ("postgresql", 2)]
    for s in figures["setups"]:
        assert s["duplicates"] == 0 and s["flood"]["delivered"] == 200 and s["latency"][0]["delivered"] == 100
    assert figures["disk"]["sqlite_commits_per_s"] > 0 and figures["disk"]["postgresql_commits_per_s"] > 0
    print_figures(figures)
    out = capsys.readouterr().out
    assert "SQLite synchronous=full commits" in out and out.count("postgresql") >= 2
