"""The CPU gauge the speculation policy reads before a local fork."""

from __future__ import annotations

from pathlib import Path

from voice_agent.compute import FixedGauge, ProcStatGauge


def _stat(path: Path, user: int, idle: int) -> None:
    # cpu user nice system idle iowait irq softirq steal
    path.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")


def test_the_busy_share_is_the_busy_ticks_over_all_ticks_since_the_last_reading(tmp_path):
    stat = tmp_path / "stat"
    _stat(stat, user=1000, idle=1000)
    t = [0.0]
    gauge = ProcStatGauge(stat, now=lambda: t[0], min_window_s=0.25)
    _stat(stat, user=1150, idle=1050)  # 150 busy of 200
    t[0] = 1.0
    assert gauge.busy() == 0.75
    _stat(stat, user=1160, idle=1140)  # 10 busy of 100
    t[0] = 1.1  # within the window: the previous share
    assert gauge.busy() == 0.75
    t[0] = 1.5
    assert abs(gauge.busy() - 0.1) < 1e-9


def test_without_proc_stat_the_gauge_falls_back_to_the_load_average(tmp_path):
    gauge = ProcStatGauge(tmp_path / "missing")
    assert 0.0 <= gauge.busy() <= 1.0


def test_the_machine_gauge_reads_a_share_between_0_and_1():
    gauge = ProcStatGauge(min_window_s=0.0)
    sum(i * i for i in range(200_000))  # some work between readings
    assert 0.0 <= gauge.busy() <= 1.0
    assert FixedGauge(0.4).busy() == 0.4
