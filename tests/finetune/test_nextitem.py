"""The next-item LLM end to end on the tiny Llama: every PEFT method trains, the model saves
and reloads to the same scores, resumes, and the CLI, the fused retriever, the recommend
pipeline and the service score with it exactly as evaluation does."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from llmrec.cli.main import main  # noqa: E402
from llmrec.data import leave_one_out  # noqa: E402
from llmrec.finetune.curves import CURVE_FILE  # noqa: E402
from llmrec.finetune.nextitem import train_nextitem  # noqa: E402
from llmrec.finetune.recipe import load_recipe  # noqa: E402
from llmrec.models.adapters import attach_adapter  # noqa: E402
from llmrec.models.loader import load_model  # noqa: E402
from llmrec.nextitem.features import EventVocab, encode_events, left_pad, training_windows  # noqa: E402
from llmrec.nextitem.network import ItemTokenLM, keep_first_layers  # noqa: E402
from llmrec.nextitem.recommender import NextItemRecommender  # noqa: E402

from ..llm_fakes import assert_png, make_dataset  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "dtype=float32", "nextitem.layers=1", "nextitem.id_init=random", "nextitem.id_dim=16",
    "nextitem.score_dim=16", "training.batch_size=4", "training.tensorboard=false",
    "training.warmup=0", "training.members=1",
]  # fmt: skip


def _recipe(model_dir: str, *extra: str):  # noqa: ANN202
    path = REPO / "finetune" / "nextitem-lora.yaml"
    return load_recipe(path, [f"model={model_dir}", *TINY, *extra])


@pytest.fixture(scope="module")
def trained(tiny_llm_dir, tmp_path_factory):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("nextitem")
    dataset = make_dataset()
    data = root / "data"
    dataset.save(data)
    recipe = _recipe(tiny_llm_dir, "training.max_steps=4", "training.eval_steps=2")
    summary = train_nextitem(recipe, dataset, root / "run", progress=False)
    return {"root": root, "data": data, "dataset": dataset, "summary": summary,
            "model": root / "run" / "model", "llm": tiny_llm_dir}  # fmt: skip


@pytest.mark.parametrize("method", ["lora", "adalora", "prefix", "qlora"])
def test_one_training_step_of_each_peft_method_changes_the_adapter(tiny_llm_dir, method) -> None:  # noqa: ANN001
    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    recipe = _recipe(tiny_llm_dir, f"adapter.method={method}", "adapter.quantization.bits=4")
    dataset = make_dataset()
    train = leave_one_out(dataset).train
    cfg = recipe.nextitem
    vocab = EventVocab.fit(train, cfg.gap_buckets, cfg.time_buckets)
    windows = training_windows([encode_events(s, dataset.catalog, vocab) for s in train], 50)
    quant = recipe.adapter.quantization if recipe.adapter.quantized else None
    loaded = load_model(tiny_llm_dir, device="cpu", dtype="float32", quantization=quant)
    backbone = attach_adapter(keep_first_layers(loaded.model, 1), recipe.adapter, total_steps=10)
    n = len(dataset.catalog)
    text = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
    net = ItemTokenLM(backbone, n, cfg, vocab, np.ones(n, bool), text_vectors=text)
    adapter = {k: p.detach().clone() for k, p in net.named_parameters()
               if p.requires_grad and k.startswith("backbone.")}  # fmt: skip
    assert adapter, f"{method}: nothing to train in the LLM"
    frozen = [p for k, p in net.named_parameters() if not p.requires_grad]
    assert frozen, "the base weights must stay frozen"
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net.train()
    for _ in range(2):  # LoRA's B starts at zero: A moves from the second step on
        loss = net.loss(torch.from_numpy(left_pad(windows[:4], 10)))
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    params = dict(net.named_parameters())
    moved = [k for k in adapter if not torch.equal(params[k], adapter[k])]
    assert moved, f"{method}: a step left every adapter weight as it was"


def test_training_writes_a_model_that_reloads_to_identical_scores(trained) -> None:  # noqa: ANN001
    summary = trained["summary"]
    assert summary.steps == 4 and summary.family == "nextitem"
    assert summary.validation_final["NDCG@10"] >= 0
    saved = json.loads((trained["root"] / "run" / "training.json").read_text())
    if importlib.util.find_spec("matplotlib") is not None:  # the train extra's; else skipped
        assert_png(trained["root"] / "run" / CURVE_FILE)
    assert saved["model"] == str(trained["model"])
    folder = trained["model"]
    assert (folder / "adapter" / "adapter_config.json").is_file()
    assert (folder / "head.safetensors").is_file()
    dataset = trained["dataset"]
    histories = [c.history for c in leave_one_out(dataset).test[:6]]
    first = NextItemRecommender.load(folder, dataset.catalog)
    again = NextItemRecommender.load(folder, dataset.catalog)
    a, b = first.score(histories), again.score(histories)
    assert a.shape == (6, len(dataset.catalog)) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    merged = NextItemRecommender.load(folder, dataset.catalog).merge()
    np.testing.assert_allclose(merged.score(histories), a, rtol=1e-4, atol=1e-4)
    other = make_dataset(n_users=5, seed=3)
    other_catalog = type(dataset.catalog)(dataset.catalog.table.iloc[:-1])
    with pytest.raises(ValueError, match="another catalogue"):
        NextItemRecommender.load(folder, other_catalog)
    assert other  # the data may differ; the catalogue may not


def test_the_model_names_its_base_portably_and_loads_under_a_hub_id(
    trained,
    tmp_path,
    monkeypatch,  # noqa: ANN001
) -> None:
    """The record names the base by path + weights fingerprint; moved to a machine that has the
    base only under a Hub id (a Hub cache layout in tmp, offline), the model loads from it."""
    import shutil

    from llmrec.models.identity import weights_fingerprint

    folder, llm, dataset = trained["model"], trained["llm"], trained["dataset"]
    meta = json.loads((folder / "model.json").read_text())
    base = meta["config"]["base"]
    assert base["path"] == str(Path(llm).resolve()) and base["id"] is None
    assert base["fingerprint"] == weights_fingerprint(llm)
    snapshot = tmp_path / "hub" / "models--acme--tiny-llama" / "snapshots" / "r1"
    shutil.copytree(llm, snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    moved = shutil.copytree(folder, tmp_path / "moved")
    meta["config"]["base_model"] = "acme/tiny-llama"
    meta["config"]["base"] = {**base, "id": "acme/tiny-llama", "path": "/gone/tiny-llama"}
    (moved / "model.json").write_text(json.dumps(meta))
    histories = [c.history for c in leave_one_out(dataset).test[:3]]
    expected = NextItemRecommender.load(folder, dataset.catalog).score(histories)
    np.testing.assert_array_equal(
        NextItemRecommender.load(moved, dataset.catalog).score(histories), expected
    )
    shutil.rmtree(snapshot)
    with pytest.raises(FileNotFoundError, match=r"acme/tiny-llama.*--llm PATH"):
        NextItemRecommender.load(moved, dataset.catalog)
    # the base given by hand (what --llm becomes in the backends) is used instead
    from llmrec.ranking.backends.nextitem import open_nextitem_model

    by_hand = open_nextitem_model("next", moved, dataset.catalog, None, "cpu", base_model=llm)
    np.testing.assert_array_equal(by_hand.recommender.score(histories), expected)


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tiny_llm_dir, tmp_path) -> None:  # noqa: ANN001
    dataset = make_dataset()
    first = _recipe(tiny_llm_dir, "training.max_steps=4", "training.eval_steps=2")
    train_nextitem(first, dataset, tmp_path, progress=False)
    more = _recipe(tiny_llm_dir, "training.max_steps=6", "training.eval_steps=2")
    summary = train_nextitem(more, dataset, tmp_path, resume=True, progress=False)
    assert summary.resumed_from is not None and summary.resumed_from.endswith("checkpoint-4")
    assert summary.steps == 6


@pytest.mark.parametrize(("keep", "expected"), [("last", "checkpoint-4"), ("best", "checkpoint-1")])
def test_the_run_ends_on_the_last_or_the_best_checkpoint(
    tiny_llm_dir,
    tmp_path,
    monkeypatch,
    keep,
    expected,  # noqa: ANN001
) -> None:
    from safetensors.torch import load_file

    import llmrec.finetune.nextitem as trainer_module

    calls = []

    def falling(model, cases):  # noqa: ANN001, ANN202, ARG001 - validation that only gets worse
        calls.append(1)
        return {"NDCG@10": 1.0 / len(calls), "HR@10": 1.0 / len(calls)}

    monkeypatch.setattr(trainer_module, "shared_validation_metrics", falling)
    recipe = _recipe(
        tiny_llm_dir, "training.max_steps=4", "training.eval_steps=1", f"training.keep={keep}",
        "training.save_total_limit=5", "training.patience=10",
    )  # fmt: skip
    summary = train_nextitem(recipe, make_dataset(), tmp_path, progress=False)
    state = json.loads(
        (tmp_path / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text()
    )
    assert Path(state["best_model_checkpoint"]).name == "checkpoint-1"
    head = load_file(str(tmp_path / "model" / "head.safetensors"))
    checkpoint = load_file(str(tmp_path / "checkpoints" / expected / "model.safetensors"))
    assert summary.steps == 4
    for name, tensor in head.items():
        assert torch.equal(tensor, checkpoint[name].to(tensor.dtype)), name


def test_cli_evaluates_the_model_alone_and_as_a_fused_view(trained, tmp_path, capsys) -> None:  # noqa: ANN001
    data, folder = str(trained["data"]), str(trained["model"])
    metrics = tmp_path / "alone.json"
    assert main(["evaluate", "--data", data, "--model", "nextitem", "--load", folder,
                 "--metrics-out", str(metrics)]) == 0  # fmt: skip
    alone = json.loads(metrics.read_text())
    assert alone["metrics"]["NDCG@10"] >= 0 and alone["users"] == 30
    out = tmp_path / "retriever"
    assert main(["retrieve", "build", "--data", data, "--out", str(out), "--views",
                 "pop,nextitem", "--set", f"views.nextitem.path={folder}"]) == 0  # fmt: skip
    from llmrec.retrieval.saved import load_retriever

    dataset = trained["dataset"]
    fused = load_retriever(out, dataset.catalog)
    histories = [c.history for c in leave_one_out(dataset).test[:4]]
    view = fused.views["nextitem"].score(histories)
    model = NextItemRecommender.load(folder, dataset.catalog)
    np.testing.assert_array_equal(view, model.score(histories))  # the saved copy scores alike
    capsys.readouterr()
    assert main(["evaluate", "--data", data, "--model", "nextitem"]) == 2
    assert "views.nextitem.path" in capsys.readouterr().err


def test_pipeline_service_and_evaluation_rank_with_the_same_scores(trained, tmp_path) -> None:  # noqa: ANN001
    """The next-item model as the ranker of retrieved candidates: the recommend pipeline, the
    evaluation ranker and the service give the scores the model itself gives."""
    from llmrec.ranking.recommend import load_pipeline
    from llmrec.serving.app import build_service
    from llmrec.serving.config import ServeConfig
    from llmrec.serving.protocol import RecommendRequest

    data, folder, dataset = trained["data"], trained["model"], trained["dataset"]
    retriever = tmp_path / "retriever"
    assert main(["retrieve", "build", "--data", str(data), "--out", str(retriever),
                 "--views", "pop,cooc"]) == 0  # fmt: skip
    user = "u3"
    history = next(s for s in dataset.sequences() if s.user_id == user)
    own = NextItemRecommender.load(folder, dataset.catalog).score([history])[0]
    pipe = load_pipeline(retriever, dataset, folder, base_model=trained["llm"], dtype="float32")
    assert pipe.model.info.method == "nextitem-lora"
    recs = pipe.recommend(history, 5, reasons="template")
    for rec in recs:
        assert rec.llm_score == pytest.approx(own[dataset.catalog.index(rec.item_id)], abs=1e-5)
        assert rec.reason is not None and rec.reason.text
    pipe.ranker.config.fusion_weight = 0.0
    ranked = pipe.ranker.score([history])[0]  # what the harness ranks (pure model order)
    cands = np.flatnonzero(np.isfinite(ranked))
    np.testing.assert_allclose(ranked[cands], own[cands], atol=1e-5)
    config = ServeConfig(data=str(data), retriever=str(retriever), base_model=trained["llm"],
                         adapters={"next": str(folder)}, reasons="template", device="cpu",
                         dtype="float32")  # fmt: skip
    service = build_service(config)
    service.batcher.start()
    try:
        response = service.recommend(RecommendRequest(user_id=user, k=5, model="next"))
    finally:
        service.batcher.stop()
    assert [i.item_id for i in response.items] == [r.item_id for r in recs]
    assert [i.score for i in response.items] == [round(r.score, 6) for r in recs]


def test_adalora_prunes_ranks_while_the_next_item_model_trains(tiny_llm_dir, tmp_path) -> None:  # noqa: ANN001
    recipe = _recipe(
        tiny_llm_dir, "adapter.method=adalora", "adapter.init_r=4", "adapter.target_r=2",
        "adapter.delta_t=1", "training.max_steps=6", "training.eval_steps=6",
    )  # fmt: skip
    summary = train_nextitem(recipe, make_dataset(), tmp_path, progress=False)
    ranks = summary.adalora_ranks
    assert ranks["matrices"] == 7  # one kept layer: q, k, v, o, gate, up, down
    assert 0 < ranks["total_rank"] < ranks["initial_total_rank"] == 28
    dataset = make_dataset()
    model = NextItemRecommender.load(tmp_path / "model", dataset.catalog)  # pruned, reloads
    assert np.isfinite(model.score([c.history for c in leave_one_out(dataset).test[:2]])).all()


def test_cooc_start_vectors_reproduce_the_cooccurrence_ranking() -> None:
    from llmrec.finetune.nextitem import cooccurrence_item_vectors
    from llmrec.retrieval.simple import Cooccurrence

    dataset = make_dataset(n_users=60)
    train = leave_one_out(dataset).train
    n = len(dataset.catalog)
    vectors = cooccurrence_item_vectors(train, dataset.catalog, 16)
    assert vectors.shape == (2, n, 16) and np.isclose(np.sqrt((vectors**2).mean()), 0.1, rtol=1e-3)
    again = cooccurrence_item_vectors(train, dataset.catalog, 16)
    assert np.array_equal(vectors, again)  # seeded
    matrix = Cooccurrence().fit(train, dataset.catalog).matrix
    dense = np.zeros((n, n))
    rows = np.repeat(np.arange(n), np.diff(matrix.indptr))
    dense[rows, matrix.indices] = matrix.data
    approx = vectors[0] @ vectors[1].T
    np.fill_diagonal(approx, -np.inf)  # an item is not its own neighbour
    # the rank-16 product follows the co-occurrence: most items' nearest neighbour is kept
    linked = dense.sum(1) > 0
    agree = (approx[linked].argmax(1) == dense[linked].argmax(1)).mean()
    assert agree > 0.5, agree
    off = ~np.eye(n, dtype=bool)[linked]
    assert np.corrcoef(approx[linked][off], dense[linked][off])[0, 1] > 0.8


def test_training_with_the_whole_history_left_out_of_the_softmax(tiny_llm_dir, tmp_path) -> None:  # noqa: ANN001
    """Also: with ``shuffle_ties`` the collator reorders each batch's tied runs, and a run
    trains with it."""
    from llmrec.finetune.nextitem import WindowCollator
    from llmrec.nextitem.features import GAP, ITEM, TIED_GAP

    batch = WindowCollator()(
        [
            {"events": np.ones((3, 5), dtype=np.int64), "prior": np.array([4, 5])},
            {"events": np.ones((2, 5), dtype=np.int64), "prior": np.zeros(0, dtype=np.int64)},
        ]
    )
    assert batch["events"].shape == (2, 3, 5)
    assert batch["prior"].tolist() == [[4, 5], [0, 0]]
    tied = np.ones((6, 5), dtype=np.int64)
    tied[:, ITEM] = np.arange(1, 7)
    tied[1:, GAP] = TIED_GAP  # one run of six events
    shuffling = WindowCollator(shuffle_ties=0)
    orders = {tuple(shuffling([tied])["events"][0, :, ITEM].tolist()) for _ in range(5)}
    assert len(orders) > 1 and all(sorted(o) == list(range(1, 7)) for o in orders)
    assert WindowCollator()([tied])["events"][0, :, ITEM].tolist() == list(range(1, 7))
    recipe = _recipe(
        tiny_llm_dir, "training.max_steps=2", "training.eval_steps=2", "nextitem.max_len=4",
        "nextitem.exclude_seen=true", "nextitem.seen_history=true", "nextitem.shuffle_ties=true",
    )  # fmt: skip
    summary = train_nextitem(recipe, make_dataset(), tmp_path, progress=False)
    assert summary.steps == 2 and summary.targets > 0
    assert np.isfinite(summary.validation_final["NDCG@10"])


def test_an_ensemble_of_runs_scores_the_mean_log_softmax_everywhere(
    trained, tmp_path, capsys
) -> None:  # noqa: ANN001, E501
    """`llmrec ensemble` joins two runs into one folder; evaluation, the recommend pipeline and
    the fused retriever read it like one model, and its scores are the mean of the members'
    log-softmax."""
    from llmrec.nextitem.ensemble import NextItemEnsemble, load_nextitem
    from llmrec.ranking.recommend import load_pipeline

    data, first, dataset = trained["data"], trained["model"], trained["dataset"]
    recipe = _recipe(trained["llm"], "training.max_steps=2", "training.eval_steps=2",
                     "training.seed=1")  # fmt: skip
    train_nextitem(recipe, dataset, tmp_path / "seed1", progress=False)
    second = tmp_path / "seed1" / "model"
    out = tmp_path / "ens"
    assert main(["ensemble", "--data", str(data), "--out", str(out), str(first),
                 str(second)]) == 0  # fmt: skip
    assert (out / "members" / "1" / "head.safetensors").is_file()
    runs = json.loads((out / "model.json").read_text())["config"]["member_runs"]
    assert [r["steps"] for r in runs] == [4, 2] and runs[1]["source"] == str(second)
    histories = [c.history for c in leave_one_out(dataset).test[:5]]
    members = [NextItemRecommender.load(f, dataset.catalog).score(histories)
               for f in (first, second)]  # fmt: skip
    expected = sum(torch.log_softmax(torch.from_numpy(m), dim=1).numpy() for m in members) / 2
    ensemble = load_nextitem(out, dataset.catalog)
    assert isinstance(ensemble, NextItemEnsemble) and ensemble.record["members"] == 2
    got = ensemble.score(histories)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(members[0], members[1])  # two runs, not one twice
    # the same folder as a model to evaluate, a retrieval view and a ranker
    metrics = tmp_path / "ens.json"
    assert main(["evaluate", "--data", str(data), "--model", "nextitem", "--load", str(out),
                 "--metrics-out", str(metrics)]) == 0  # fmt: skip
    assert json.loads(metrics.read_text())["users"] == 30
    retriever = tmp_path / "retriever"
    assert main(["retrieve", "build", "--data", str(data), "--out", str(retriever), "--views",
                 "pop,nextitem", "--set", f"views.nextitem.path={out}"]) == 0  # fmt: skip
    from llmrec.retrieval.saved import load_retriever

    view = load_retriever(retriever, dataset.catalog).views["nextitem"]
    np.testing.assert_allclose(view.score(histories), got, atol=1e-6)
    pipe = load_pipeline(retriever, dataset, out, base_model=trained["llm"], dtype="float32")
    user = histories[0]
    for rec in pipe.recommend(user, 3, reasons="template"):
        assert rec.llm_score == pytest.approx(got[0, dataset.catalog.index(rec.item_id)], abs=1e-5)
    # what is not a next-item model, or is an ensemble already, is refused with a clear message
    capsys.readouterr()
    assert main(["ensemble", "--data", str(data), "--out", str(tmp_path / "x"), str(data)]) == 2
    assert "no trained next-item model" in capsys.readouterr().err
    assert main(["ensemble", "--data", str(data), "--out", str(tmp_path / "y"), str(out)]) == 2
    assert "an ensemble already" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_training_members_writes_one_ensemble_of_seeded_runs(tiny_llm_dir, tmp_path) -> None:  # noqa: ANN001
    """`training.members: 2` trains seeds 0 and 1 into OUT/members/<i> and saves their
    ensemble as OUT/model; its scores are the mean of the two runs' log-softmax; --resume keeps
    the finished runs instead of training them again."""
    from llmrec.nextitem.ensemble import NextItemEnsemble, load_nextitem

    dataset = make_dataset()
    recipe = _recipe(tiny_llm_dir, "training.max_steps=2", "training.eval_steps=2",
                     "training.members=2", "training.seed=3")  # fmt: skip
    summary = train_nextitem(recipe, dataset, tmp_path, progress=False)
    folders = [tmp_path / "members" / str(i) for i in range(2)]
    seeds = [load_recipe(f / "recipe.yaml").training for f in folders]
    assert [(t.seed, t.members) for t in seeds] == [(3, 1), (4, 1)]
    assert summary.members == 2 and summary.steps == 4
    assert len(summary.member_validation) == 2
    saved = json.loads((tmp_path / "training.json").read_text())
    assert saved["members"] == 2 and saved["validation_final"] == summary.validation_final
    histories = [c.history for c in leave_one_out(dataset).test[:5]]
    runs = [NextItemRecommender.load(f / "model", dataset.catalog).score(histories)
            for f in folders]  # fmt: skip
    assert not np.allclose(runs[0], runs[1])  # two seeds, two different runs
    ensemble = load_nextitem(tmp_path / "model", dataset.catalog)
    assert isinstance(ensemble, NextItemEnsemble)
    expected = sum(torch.log_softmax(torch.from_numpy(r), dim=1).numpy() for r in runs) / 2
    np.testing.assert_allclose(ensemble.score(histories), expected, atol=1e-5)
    # resuming: member 0 finished, member 1 lost its model -> only member 1 trains again
    stamp = (folders[0] / "training.json").stat().st_mtime_ns
    import shutil

    shutil.rmtree(folders[1] / "model")
    again = train_nextitem(recipe, dataset, tmp_path, resume=True, progress=False)
    assert (folders[0] / "training.json").stat().st_mtime_ns == stamp
    assert (folders[1] / "model" / "model.json").is_file() and again.members == 2


def test_members_are_refused_for_the_listwise_family() -> None:
    with pytest.raises(ValueError, match="members"):
        load_recipe(REPO / "finetune" / "lora.yaml", ["training.members=2"])
    with pytest.raises(ValueError, match="members"):
        load_recipe(REPO / "finetune" / "nextitem-lora.yaml", ["training.members=0"])


def test_a_seed_gives_the_same_model_whatever_the_validation_checks(tiny_llm_dir, tmp_path) -> None:  # noqa: ANN001
    """training.seed fixes the random start of the adapter and the item head too (the Trainer
    seeds only after they are drawn), and validating every step leaves training alone."""
    dataset = make_dataset()
    histories = [c.history for c in leave_one_out(dataset).test[:5]]
    torch.manual_seed(123)  # whatever state the process is in before the run
    scores = []
    for name, every in (("a", 1), ("b", 100)):
        recipe = _recipe(tiny_llm_dir, "training.max_steps=4", f"training.eval_steps={every}")
        train_nextitem(recipe, dataset, tmp_path / name, progress=False)
        model = NextItemRecommender.load(tmp_path / name / "model", dataset.catalog)
        scores.append(model.score(histories))
        torch.manual_seed(456)
    np.testing.assert_array_equal(scores[0], scores[1])
