"""The multi-process helpers of fine-tuning (``llmrec/finetune/processes.py``) outside a launcher:
every one is the single-process identity. The launched behaviour is tested by
``tests/finetune/test_multiprocess.py``."""

from __future__ import annotations

import pytest

from llmrec.finetune import processes


@pytest.fixture(autouse=True)
def not_launched(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)


def test_outside_a_launcher_one_process_does_everything() -> None:
    assert processes.world_size() == 1 and not processes.distributed()
    assert processes.rank() == 0 and processes.is_main()
    value = {"rows": [1, 2]}
    assert processes.broadcast(value) is value
    assert processes.gather(value) == [value]
    assert processes.shard(5) == [0, 1, 2, 3, 4]
    assert processes.on_main(lambda a, b: a + b, 2, 3) == 5
    with processes.main_first():
        pass
    processes.barrier()
    processes.init()  # joins nothing


def test_the_launchers_cpu_flag_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not processes.launched_on_cpu()
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")  # as `accelerate launch --cpu` sets it
    assert processes.launched_on_cpu()


def test_sharded_results_come_back_in_order_and_complete() -> None:
    # two processes' shares of 5 items: 0, 2, 4 and 1, 3
    parts = [[(0, "a"), (2, "c"), (4, "e")], [(1, "b"), (3, "d")]]
    assert processes.merge_sharded(parts, 5) == ["a", "b", "c", "d", "e"]
    with pytest.raises(RuntimeError, match="4 of 5"):
        processes.merge_sharded(parts[:1] + [[(1, "b")]], 5)
