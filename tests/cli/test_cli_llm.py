"""`llmrec recommend` and `llmrec evaluate --model llm` on a tiny model, retriever and adapter."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from llmrec.cli.main import main
from llmrec.data import leave_one_out
from llmrec.finetune.recipe import load_recipe
from llmrec.finetune.trainer import finetune
from llmrec.ranking.reasons import Grounder
from llmrec.ranking.tuning import RESIDUAL_GRID
from llmrec.retrieval.fusion import FusedRetriever

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def parts(tiny_llm_dir, tmp_path_factory):  # noqa: ANN001, ANN201
    """A saved dataset, a retriever built by the CLI, and a LoRA adapter from the shipped recipe
    (trained as a plain ranker, so that its fusion weight is tuned)."""
    from ..llm_fakes import make_dataset

    root = tmp_path_factory.mktemp("cli-llm")
    dataset = make_dataset()
    data = root / "data"
    dataset.save(data)
    retriever = root / "retriever"
    assert main(["retrieve", "build", "--data", str(data), "--out", str(retriever),
                 "--views", "pop,cooc"]) == 0  # fmt: skip
    recipe = load_recipe(
        REPO / "finetune" / "lora.yaml",
        [f"model={tiny_llm_dir}", "dtype=float32", "adapter.layers=1", "training.max_steps=2",
         "training.eval_steps=1", "training.eval_users=5", "training.batch_size=2",
         "training.tensorboard=false", "examples.num_candidates=5", "examples.hard_negatives=4",
         "training.residual=false"],
    )  # fmt: skip
    recipe = replace(recipe, training=replace(recipe.training, warmup=0.0))
    ret = FusedRetriever.load(retriever / "fused", dataset.catalog)
    finetune(recipe, dataset, root / "run", ret, progress=False)
    return {"data": data, "retriever": retriever, "adapter": root / "run" / "adapter",
            "dataset": dataset, "model": tiny_llm_dir}  # fmt: skip


def _recommend(parts, *extra: str) -> int:  # noqa: ANN001
    return main(["recommend", "--retriever", str(parts["retriever"]), "--data", str(parts["data"]),
                 "--adapter", str(parts["adapter"]), *extra])  # fmt: skip


def test_recommend_for_a_user_prints_catalogue_items_with_grounded_reasons(parts, capsys) -> None:  # noqa: ANN001
    dataset = parts["dataset"]
    code = _recommend(parts, "--user", "u3", "-k", "3", "--json")
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    history = next(s for s in dataset.sequences() if s.user_id == "u3")
    grounder = Grounder(dataset.catalog)
    for row in rows:
        assert row["item_id"] in dataset.catalog
        assert row["item_id"] not in history.item_ids
        assert row["reason"] and row["reason_source"] in ("llm", "template")
        assert grounder.check(row["reason"], history, row["item_id"])
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_recommend_from_titles_reports_fuzzy_matches(parts, capsys) -> None:  # noqa: ANN001
    code = _recommend(parts, "--history", "the usual suspects; Fargo", "--reasons", "template")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1. [" in out and "why:" in out
    code = _recommend(parts, "--history", "Usual Suspcts", "--reasons", "none")
    out = capsys.readouterr().out
    assert code == 0 and "matched 'Usual Suspects, The'" in out and "why:" not in out


def test_recommend_with_a_query_prints_what_it_understood(parts, capsys) -> None:  # noqa: ANN001
    catalog = parts["dataset"].catalog
    code = _recommend(parts, "--history", "Toy Story", "--query", "something scary, not sci-fi",
                      "--reasons", "none", "--json")  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert rows
    for row in rows:
        genres = set(catalog.item(row["item_id"]).categories)
        assert genres & {"Horror", "Thriller"} and "Sci-Fi" not in genres
    code = _recommend(parts, "--history", "Toy Story", "--query", "a horror film from the 1940s",
                      "--reasons", "none")  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert 'understood: "horror" -> Horror' in out
    assert "relaxed: no item satisfies every constraint; dropped years 1940-1949" in out


def test_recommend_all_users_exports_jsonl_and_parquet(parts, tmp_path, capsys) -> None:  # noqa: ANN001
    import pandas as pd

    dataset = parts["dataset"]
    users = [s.user_id for s in dataset.sequences()]
    out = tmp_path / "out" / "recs.jsonl"
    code = _recommend(parts, "--all-users", "--out", str(out), "-k", "3", "--reasons", "template")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"wrote {3 * len(users)} recommendations for {len(users)} users" in captured.out
    assert "recommend: 100%" in captured.err  # the progress bar
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user_id"] for r in rows] == [u for u in users for _ in range(3)]
    assert [r["rank"] for r in rows] == [1, 2, 3] * len(users)
    histories = {s.user_id: set(s.item_ids) for s in dataset.sequences()}
    for row in rows:
        assert row["item_id"] in dataset.catalog and row["item_id"] not in histories[row["user_id"]]
        assert row["reason"] and row["reason_source"] == "template"
        assert isinstance(row["views"], dict) and row["views"]
    # the same items and scores as one user at a time
    _recommend(parts, "--user", users[0], "-k", "3", "--reasons", "template", "--json")
    single = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [(r["item_id"], r["score"]) for r in single] == [
        (r["item_id"], r["score"]) for r in rows[:3]
    ]

    table = tmp_path / "recs.parquet"
    assert _recommend(parts, "--all-users", "--out", str(table), "-k", "3", "--reasons",
                      "none") == 0  # fmt: skip
    frame = pd.read_parquet(table)
    assert list(frame.columns) == [
        "user_id", "rank", "item_id", "title", "year", "score", "llm_score",
        "retrieval_score", "views", "reason", "reason_source",
    ]  # fmt: skip
    assert frame["item_id"].tolist() == [r["item_id"] for r in rows]
    assert frame["reason"].isna().all() and str(frame["rank"].dtype) == "int64"
    assert json.loads(frame["views"].iloc[0]) == rows[0]["views"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "recs.parquet"]  # no temp files


@pytest.mark.parametrize(
    "args, message",
    [
        (["--all-users"], "--all-users writes to --out FILE"),
        (["--user", "u1", "--out", "x.jsonl"], "--out goes with --all-users"),
        (["--user", "nobody"], "not in dataset"),
        (["--history", "Zzyzx Qwerty Nonexistent"], "no catalogue item matches"),
        (["--user", "u1", "-k", "0"], "-k must be at least 1"),
    ],
)
def test_recommend_rejects_bad_input(parts, capsys, args, message) -> None:  # noqa: ANN001
    assert _recommend(parts, *args) == 2
    assert message in capsys.readouterr().err


def test_evaluate_model_llm_reports_pure_and_fused_rankings(parts, tmp_path, capsys) -> None:  # noqa: ANN001
    metrics = tmp_path / "llm.json"
    rankings = tmp_path / "llm.jsonl"
    code = main(["evaluate", "--model", "llm", "--data", str(parts["data"]),
                 "--retriever", str(parts["retriever"]), "--adapter", str(parts["adapter"]),
                 "--users", "6", "--metrics-out", str(metrics),
                 "--rankings-out", str(rankings)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "fusion weight" in out and "llm+retrieval" in out
    fused = json.loads(metrics.read_text())
    pure = json.loads(metrics.with_suffix(".llm-only.json").read_text())
    assert fused["model"] == "llm+retrieval" and pure["model"] == "llm"
    assert fused["users"] == pure["users"] == 6
    # tuned only on the validation users the adapter held out (5 of them)
    assert "tuned on 5 validation users" in out
    lines = [json.loads(x) for x in rankings.read_text().splitlines()]
    assert len(lines) == 6 and all(len(x["ranked"]) <= 20 for x in lines)
    split = leave_one_out(parts["dataset"])
    assert {x["user_id"] for x in lines} <= {c.user_id for c in split.test}


def test_evaluate_tunes_a_residual_adapter_near_its_weight(parts, tmp_path, capsys) -> None:  # noqa: ANN001
    from llmrec.ranking.settings import RANKER_FILE, read_ranker_settings

    recipe = load_recipe(
        REPO / "finetune" / "lora.yaml",
        [f"model={parts['model']}", "dtype=float32", "adapter.layers=1", "training.max_steps=1",
         "training.eval_steps=1", "training.eval_users=5", "training.batch_size=2",
         "training.tensorboard=false", "examples.num_candidates=5", "examples.hard_negatives=4",
         "examples.source=valid", "training.residual=true"],
    )  # fmt: skip
    ret = FusedRetriever.load(parts["retriever"] / "fused", parts["dataset"].catalog)
    summary = finetune(recipe, parts["dataset"], tmp_path / "run", ret, progress=False)
    adapter = tmp_path / "run" / "adapter"
    args = ["evaluate", "--model", "llm", "--data", str(parts["data"]),
            "--retriever", str(parts["retriever"]), "--adapter", str(adapter),
            "--users", "4"]  # fmt: skip
    trained_settings = (adapter / RANKER_FILE).read_text()
    assert main(args) == 0
    assert "tuned on" in capsys.readouterr().out
    # evaluation does not write into the adapter folder unless asked to
    assert (adapter / RANKER_FILE).read_text() == trained_settings
    code = main([*args, "--save-weight"])
    out = capsys.readouterr().out
    assert code == 0, out
    trained = summary.residual_weight
    assert "fusion weight saved to" in out
    # tuned over multiples of the trained weight, not over the plain grid
    tuned = read_ranker_settings(adapter)
    assert tuned.source == "validation"
    assert {float(w) for w in tuned.validation} == {trained * f for f in RESIDUAL_GRID}
    assert tuned.fusion_weight in {trained * f for f in RESIDUAL_GRID}


def test_tuning_under_the_sampled_protocol_scores_what_that_protocol_scores(parts) -> None:  # noqa: ANN001
    from llmrec.evaluation import EvalConfig, evaluate
    from llmrec.ranking.recommend import load_pipeline

    dataset = parts["dataset"]
    ranker = load_pipeline(parts["retriever"], dataset, parts["adapter"], fusion_weight=0.0).ranker
    valid = leave_one_out(dataset).valid
    sampled = EvalConfig(protocol="sampled", ks=(1, 5), n_negatives=4)
    with pytest.raises(ValueError, match="needs the dataset"):
        ranker.tune(valid, (0.0, 1.0), protocol=sampled)
    grid = (0.0, 1.0, 4.0, 1000.0)
    quality = ranker.tune(valid, grid, dataset=dataset, protocol=sampled)
    picked = ranker.config.fusion_weight
    # the tune metric (NDCG@10) is added to the protocol's cut-offs
    for w in grid:
        ranker.config.fusion_weight = w
        result = evaluate(ranker, dataset, valid, replace(sampled, ks=(1, 5, 10)), progress=False)
        assert quality[str(w)] == pytest.approx(result.metrics["NDCG@10"])
    assert quality[str(picked)] == max(quality.values())


def test_evaluate_sampled_tunes_on_sampled_lists_and_keeps_the_serving_weight(
    parts, tmp_path, capsys
) -> None:  # noqa: ANN001
    from llmrec.ranking.settings import RANKER_FILE

    ranker_file = Path(parts["adapter"]) / RANKER_FILE
    before = ranker_file.read_text() if ranker_file.is_file() else None
    code = main(["evaluate", "--model", "llm", "--data", str(parts["data"]),
                 "--retriever", str(parts["retriever"]), "--adapter", str(parts["adapter"]),
                 "--users", "4", "--protocol", "sampled", "--negatives", "4"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "(sampled protocol)" in out
    # serving reranks the retriever's top-k: a weight tuned on sampled lists is not saved for it
    after = ranker_file.read_text() if ranker_file.is_file() else None
    assert after == before


def test_a_pipeline_writes_reasons_with_the_base_when_its_adapter_only_ranks(parts) -> None:  # noqa: ANN001
    from llmrec.ranking.recommend import load_pipeline

    pipe = load_pipeline(parts["retriever"], parts["dataset"], parts["adapter"])
    assert pipe.model.info.writes_text is False  # the shipped recipe trains no reasons
    assert pipe.model.scorer.write_with_adapter is False
    assert load_pipeline(parts["retriever"], parts["dataset"], None).model.info.writes_text


@pytest.mark.parametrize("k", [5, 25])
def test_serving_recommend_and_evaluate_give_the_same_items_and_scores(parts, capsys, k) -> None:  # noqa: ANN001
    """One path: `llmrec recommend`, the library pipeline, the ranker the evaluation harness
    scores (full ranking) and the HTTP service's /v1/recommend logic rank the same user alike.
    With k over the 20 candidates the LLM ranks, the rest follow in the retriever's order (the
    harness ranks only the LLM's 20)."""
    import numpy as np

    from llmrec.ranking.recommend import load_pipeline
    from llmrec.serving.app import build_service
    from llmrec.serving.config import Limits, ServeConfig
    from llmrec.serving.protocol import RecommendRequest

    dataset, user = parts["dataset"], "u3"
    code = _recommend(parts, "--user", user, "-k", str(k), "--json", "--reasons", "none",
                      "--dtype", "float32")  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    cli = [(r["item_id"], r["score"]) for r in map(json.loads, out.splitlines()) if r]
    pipe = load_pipeline(parts["retriever"], dataset, parts["adapter"], dtype="float32")
    assert pipe.ranker.config.fusion_weight == 1.0  # fused, not the pure LLM
    history = next(s for s in dataset.sequences() if s.user_id == user)
    library = [(r.item_id, round(r.score, 6)) for r in pipe.recommend(history, k, reasons="none")]
    scores = pipe.ranker.score([history])[0]  # what the harness ranks under full ranking
    ranked = np.flatnonzero(np.isfinite(scores))
    top = ranked[np.argsort(-scores[ranked], kind="stable")][:k]
    evaluated = [(dataset.catalog.ids[i], round(float(scores[i]), 6)) for i in top]
    config = ServeConfig(data=str(parts["data"]), retriever=str(parts["retriever"]),
                         base_model=parts["model"], adapters={"a": str(parts["adapter"])},
                         reasons="none", device="cpu", dtype="float32",
                         limits=Limits(max_history=2))  # fmt: skip
    assert len(history) > 2  # a request limit must not cut a known user's stored history
    service = build_service(config)
    service.batcher.start()
    try:
        response = service.recommend(RecommendRequest(user_id=user, k=k, explain=False))
    finally:
        service.batcher.stop()
    served = [(i.item_id, i.score) for i in response.items]
    assert len(cli) == k
    assert cli == library == served
    assert evaluated == cli[: len(evaluated)] and len(evaluated) == min(k, 20)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_recommend_on_vllm_without_vllm_names_the_extra(parts, capsys) -> None:  # noqa: ANN001
    code = _recommend(parts, "--user", "u3", "--backend", "vllm")
    err = capsys.readouterr().err
    assert code == 3
    assert "pip install 'llmrec[vllm]'" in err and "Traceback" not in err


def test_a_base_model_given_with_an_adapter_is_the_one_it_runs_on(parts, tmp_path) -> None:  # noqa: ANN001
    """`--llm` with `--adapter`: the adapter runs on the base given (here the recorded base under
    another path, as on a machine that keeps it elsewhere), not on the path its record names."""
    from llmrec.ranking.recommend import load_pipeline

    elsewhere = tmp_path / "same-base-elsewhere"
    elsewhere.symlink_to(parts["model"], target_is_directory=True)
    pipe = load_pipeline(parts["retriever"], parts["dataset"], parts["adapter"], str(elsewhere))
    assert pipe.model.info.base_model == str(elsewhere)
    recorded = load_pipeline(parts["retriever"], parts["dataset"], parts["adapter"])
    assert recorded.model.info.base_model == parts["model"]


def test_nextitem_summary_names_a_sasrec_start_only_when_there_was_one(capsys, tmp_path) -> None:  # noqa: ANN001
    from types import SimpleNamespace

    from llmrec.cli.llm import print_nextitem_summary

    summary = SimpleNamespace(
        steps=10, train_seconds=12.0, seconds_per_step=1.2, validation_final={"NDCG@10": 0.1},
        validation_sasrec=None, model=str(tmp_path / "model"), trainable_parameters=5,
        peak_memory_mb=1.0,
    )  # fmt: skip
    print_nextitem_summary(summary, tmp_path)
    out = capsys.readouterr().out
    assert "validation NDCG@10 0.1000\n" in out and "SASRec" not in out
    summary.validation_sasrec = {"NDCG@10": 0.09}
    print_nextitem_summary(summary, tmp_path)
    assert "(the SASRec it started from: 0.0900)" in capsys.readouterr().out
