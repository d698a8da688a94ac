"""Versioned prompt templates: the shipped files load, malformed ones are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmrec.prompts.templates import (
    TASKS,
    PromptTemplate,
    list_templates,
    load_template,
    load_template_file,
)

from ..llm_fakes import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHIPPED = sorted((REPO / "prompts").glob("*.yaml"))

GOOD = {
    "name": "mine",
    "version": 1,
    "task": "listwise",
    "variables": {"history": "entries", "candidates": "labelled items"},
    "system": "You rank items.",
    "user": "{% for c in candidates %}({{ c.label }}) {{ c.text }}\n{% endfor %}",
    "answer": "{{ label }}",
}


def _write(folder: Path, name: str, raw: object) -> Path:
    path = folder / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_every_shipped_template_loads_and_declares_what_it_uses() -> None:
    assert len(SHIPPED) >= 4
    for path in SHIPPED:
        template = load_template_file(path)
        assert template.task in TASKS
        assert path.name == f"{template.name}.v{template.version}.yaml"
        assert set(template.bodies) == {"system", "user", "answer"}
        assert template.variables, path


def test_list_templates_names_the_shipped_ones() -> None:
    found = list_templates()
    for name in ("rank_listwise", "rank_pointwise", "reason", "chat_system"):
        assert 1 in found[name]
    assert all(versions == sorted(versions) for versions in found.values())


def test_load_by_name_at_version_and_newest() -> None:
    pinned = load_template("rank_listwise@v1")
    assert (pinned.name, pinned.version, pinned.task) == ("rank_listwise", 1, "listwise")
    assert pinned.key == "rank_listwise@v1"
    newest = load_template("rank_listwise")
    assert newest.version == max(list_templates()["rank_listwise"])
    assert load_template("rank_listwise", version=1).key == "rank_listwise@v1"


def test_load_unknown_name_or_version_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="no prompt template named 'nope'"):
        load_template("nope")
    with pytest.raises(FileNotFoundError, match=r"has versions \[.*\], not 99"):
        load_template("rank_listwise@v99")
    with pytest.raises(ValueError, match="bad template version 'one'"):
        load_template("rank_listwise@vone")


def test_newest_version_wins_and_pinned_versions_stay(tmp_path: Path) -> None:
    _write(tmp_path, "mine.v1.yaml", GOOD)
    _write(tmp_path, "mine.v2.yaml", {**GOOD, "version": 2, "system": "Version two."})
    assert list_templates([tmp_path]) == {"mine": [1, 2]}
    assert load_template("mine", dirs=[tmp_path]).bodies["system"] == "Version two."
    assert load_template("mine@v1", dirs=[tmp_path]).bodies["system"] == "You rank items."


def test_a_template_file_can_be_loaded_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "mine.v1.yaml", GOOD)
    assert load_template(str(path)).key == "mine@v1"


def test_undeclared_variable_is_rejected_naming_it(tmp_path: Path) -> None:
    bad = {**GOOD, "user": "{{ histroy }} and {{ candidates }}"}
    path = _write(tmp_path, "mine.v1.yaml", bad)
    with pytest.raises(ValueError, match=r"user body uses undeclared variables \['histroy'\]"):
        load_template_file(path)


def test_bad_task_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "mine.v1.yaml", {**GOOD, "task": "summarise"})
    with pytest.raises(ValueError, match="task must be one of"):
        load_template_file(path)


def test_bad_yaml_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "mine.v1.yaml", "name: mine\nversion: [1\nsystem: 'x\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_template_file(path)


def test_bad_jinja_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "mine.v1.yaml", {**GOOD, "user": "{% for c in candidates %}"})
    with pytest.raises(ValueError, match="user body is not a valid Jinja2 template"):
        load_template_file(path)


def test_missing_keys_and_non_mapping_are_rejected(tmp_path: Path) -> None:
    raw = {k: v for k, v in GOOD.items() if k != "answer"}
    with pytest.raises(ValueError, match=r"missing keys \['answer'\]"):
        load_template_file(_write(tmp_path, "mine.v1.yaml", raw))
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        load_template_file(_write(tmp_path, "mine.v2.yaml", "- just\n- a list\n"))


def test_file_name_and_content_must_agree(tmp_path: Path) -> None:
    path = _write(tmp_path, "mine.v2.yaml", GOOD)  # content says version 1
    with pytest.raises(ValueError, match="file name says mine v2, content says mine v1"):
        load_template_file(path)
    path = _write(tmp_path, "other.v1.yaml", GOOD)
    with pytest.raises(ValueError, match="file name says other v1"):
        load_template_file(path)


def test_render_refuses_undeclared_values_and_keeps_values_literal() -> None:
    template = PromptTemplate.from_dict(GOOD)
    with pytest.raises(ValueError, match="does not declare"):
        template.render("user", candidates=[], extra="x")
    text = template.render("user", candidates=[{"label": "A", "text": "{{ 7*7 }}"}])
    assert "{{ 7*7 }}" in text and "49" not in text
