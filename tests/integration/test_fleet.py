"""``make fleet`` in small: 50 simulated devices (the agent's own parts, two processes) on a
real Mosquitto. Correctness only; the speed figures are ``make fleet``'s table."""

from __future__ import annotations

from pathlib import Path

from fleetsim.scenario import Options, run

N = 50


def test_fifty_devices_answer_refuse_fetch_and_ride_out_a_broker_restart(tmp_path: Path) -> None:
    result = run(Options(N, tmp_path, min_processes=2, fetch_jitter_s=2, outage_s=2.0))

    assert result["start"]["online"] == N
    assert result["floor"]["acked"] == N
    emergency = result["emergency"]
    assert (emergency["acked"], emergency["missing"]) == (N, 0)
    # Every device refused the replay and the forgery, and executed neither.
    refusals = result["refusals"]
    assert refusals == {
        "replay_refused": N,
        "forged_refused": N,
        "forged_executed": 0,
        "stopped": N,
    }
    program = result["program"]
    assert (program["live"], program["failed"]) == (N, 0)
    assert program["served_ratio"] >= 1.0  # every device fetched every byte itself
    assert program["requests"] >= N * program["files"]
    restart = result["restart"]
    assert restart["back_online"] == N
    assert restart["cmd_during_outage_done"] == N
    assert restart["cmd_after_restart_done"] == N
    assert restart["lost"] == 0
