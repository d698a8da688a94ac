"""A new recommender from its name and ``--set``: the typed config that ``--set`` paths point into.

- One model (``pop``, ``markov``, ``sasrec``, ``text``, ``cooc``, ``recent-pop``): its config
  dataclass, e.g. ``llmrec evaluate --model sasrec --set epochs=50``.
- ``fused`` (``llmrec evaluate --model fused``, ``llmrec retrieve build``):
  :class:`FusedSettings`, the :class:`~llmrec.retrieval.fusion.FusionConfig` fields at the top
  (``--set rrf_k=30``, ``--set weights.text=2``) and every view's config under ``views.NAME``
  (``--set views.sasrec.epochs=50``, ``--set views.text.model=runs/text-encoder/final``).

Imported when a command runs (it imports the retrieval package).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from llmrec.overrides import OverrideError, apply_overrides, parse_overrides
from llmrec.recommender import Recommender
from llmrec.retrieval import registry
from llmrec.retrieval.fusion import FusedRetriever, FusionConfig


@dataclass
class FusedSettings(FusionConfig):
    """A fused retriever's settings as one tree: the fusion's own at the top, each view's config
    (a dataclass instance) under ``views[NAME]``."""

    views: dict[str, Any] = field(default_factory=dict)

    def fusion_config(self) -> FusionConfig:
        return FusionConfig(**{f.name: getattr(self, f.name) for f in fields(FusionConfig)})

    def build(self) -> FusedRetriever:
        """A new, unfitted fused retriever with these settings."""
        members = {name: registry.view_class(name)(config) for name, config in self.views.items()}
        return FusedRetriever(members, self.fusion_config())


def view_config(name: str, **settings: Any) -> Any:
    """The config of view ``name`` (defaults, then ``settings``)."""
    return registry.view_class(name).config_class(**settings)


def fused_settings(
    views: Sequence[str],
    pairs: Sequence[str] = (),
    fusion: FusionConfig | None = None,
    view_configs: Mapping[str, Any] | None = None,
) -> FusedSettings:
    """``fusion`` (default: defaults) and the views' configs (``view_configs``, else defaults)
    with the ``--set`` pairs applied."""
    views = list(views)
    unknown = sorted(set(view_configs or {}) - set(views))
    if unknown:
        raise ValueError(f"settings given for views {unknown} that are not in {views}")
    configs = {v: (view_configs or {}).get(v) or view_config(v) for v in views}
    base = fusion or FusionConfig()
    own = {f.name: getattr(base, f.name) for f in fields(FusionConfig)}
    overrides = parse_overrides(pairs)
    for override in overrides:
        _refuse_old_view_spelling(override.path, override.text, views)
    return apply_overrides(FusedSettings(**own, views=configs), overrides, "the fused retriever")


def _refuse_old_view_spelling(path: tuple[str, ...], text: str, views: list[str]) -> None:
    """``sasrec.epochs=50`` was a view setting before ``--set`` meant one thing everywhere."""
    fusion_keys = {f.name for f in fields(FusedSettings)}
    if len(path) > 1 and path[0] in views and path[0] not in fusion_keys:
        new = "views." + text
        raise OverrideError(
            f"--set {text}: a view's settings are under views.{path[0]} now; write --set {new}"
        )


def create_model(
    name: str, pairs: Sequence[str] = (), views: Sequence[str] = registry.DEFAULT_VIEWS
) -> Recommender:
    """A new, unfitted model ``name`` with the ``--set`` pairs applied to its config."""
    if name == "fused":
        return fused_settings(views, pairs).build()
    model_class = registry.view_class(name)
    config_class = getattr(model_class, "config_class", None)
    if config_class is None:
        if pairs:
            raise OverrideError(f"--set {pairs[0]}: the {name} model takes no settings")
        return model_class()
    config = apply_overrides(config_class(), pairs, f"the {name} model")
    return model_class(config)
