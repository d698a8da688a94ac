"""The next-item network: item vectors, the every-position loss by hand, cold items from text,
the sampled softmax, and the LLM cut to its first layers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llmrec.nextitem.config import NextItemConfig  # noqa: E402
from llmrec.nextitem.features import EventVocab, left_pad  # noqa: E402
from llmrec.nextitem.network import ItemTokenLM, keep_first_layers, standardise  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N, H, T = 7, 8, 6  # items, hidden size, text width


class EchoBackbone(torch.nn.Module):
    """A stand-in LLM whose "hidden state" at a position is its input vector, so that the loss
    can be written out by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(hidden_size=H)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, inputs_embeds, attention_mask, use_cache):  # noqa: ANN001, ANN201, ARG002
        return SimpleNamespace(logits=inputs_embeds * self.scale)


def _net(known=None, **settings) -> ItemTokenLM:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    values = {"id_dim": 4, "score_dim": 5, "dropout": 0.0, "id_dropout": 0.0}
    cfg = NextItemConfig(**{**values, "views": ("gap", "rating"), **settings})
    vocab = EventVocab(0.0, 10.0, gap_buckets=4, time_buckets=4, rating_min=1.0, rating_max=5.0)
    net = ItemTokenLM(
        EchoBackbone(), N, cfg, vocab,
        known=np.ones(N, bool) if known is None else known,
        text_vectors=rng.normal(size=(N, T)).astype(np.float32),
        id_vectors=rng.normal(size=(N, 4)).astype(np.float32),
        item_counts=np.arange(1, N + 1, dtype=float),
    )  # fmt: skip
    with torch.no_grad():
        net.item_bias.copy_(torch.linspace(-0.3, 0.3, N))
    return net.eval()


def _events(rows: list[list[int]]) -> torch.Tensor:
    """Left-padded events from item tokens (gap 2, rating 3 everywhere)."""
    arrays = [np.array([[i, 2, 3, 1, 0] for i in row], dtype=np.int64) for row in rows]
    return torch.from_numpy(left_pad(arrays, max(len(r) for r in rows)))


def test_input_vectors_add_text_id_and_views_and_zero_padding() -> None:
    net = _net()
    events = _events([[1, 2, 3], [4]])
    keep = net.known.float()
    x = net.input_vectors(events, keep)
    assert x.shape == (2, 3, H)
    assert torch.all(x[1, :2] == 0)  # padding
    item = 2  # token 3
    raw = (
        net.id_in_proj(net.id_in.weight[item + 1])
        + net.text_in(net.text_vectors[item])
        + net.gap.weight[2]
        + net.rating.weight[3]
    )
    assert torch.allclose(x[0, 2], net.in_norm(raw), atol=1e-6)
    # the ID part really enters: hiding it changes the vector
    hidden = net.input_vectors(events, torch.zeros(N))
    assert not torch.allclose(hidden[0, 2], x[0, 2])


def test_every_position_loss_equals_the_hand_computed_cross_entropy() -> None:
    net = _net()
    events = _events([[1, 2, 3, 4], [5, 6]])
    loss = net.loss(events)
    keep = torch.ones(N)
    x = net.input_vectors(events[:, :-1], keep)  # the echo backbone: hidden = input vector
    users = net.user_proj(x)  # (2, 3, S)
    items = net.id_out_proj(net.id_out.weight) + net.text_out(net.text_vectors)  # (N, S)
    terms = []
    # row 0: inputs 1,2,3 -> targets 2,3,4; row 1: padding, padding, 5 -> target 6
    for row, pos, target in [(0, 0, 2), (0, 1, 3), (0, 2, 4), (1, 2, 6)]:
        logits = items @ users[row, pos] + net.item_bias
        terms.append(-torch.log_softmax(logits, dim=0)[target - 1])
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-6)
    assert len(terms) == 4  # padded positions teach nothing


def test_items_never_seen_in_training_leave_the_softmax_and_score_from_text() -> None:
    known = np.ones(N, bool)
    known[6] = False  # item 6 (token 7) is cold
    net = _net(known=known)
    events = _events([[1, 2]])
    before = net.score_last(events)
    with torch.no_grad():
        net.id_out.weight[6].add_(5.0)  # its ID vector is never used ...
        net.id_in.weight[7].add_(5.0)
    assert torch.allclose(net.score_last(events), before)
    with torch.no_grad():
        net.text_vectors[6].add_(1.0)  # ... its text is
    after = net.score_last(events)
    assert not torch.isclose(after[0, 6], before[0, 6])
    assert torch.allclose(after[0, :6], before[0, :6])
    assert torch.isclose(net.biases()[6], net.item_bias[:6].mean())
    # the training loss ignores the cold item entirely (finite, and unchanged by its bias)
    loss = net.loss(_events([[1, 2, 3]]))
    with torch.no_grad():
        net.item_bias[6] = 100.0
    assert torch.isclose(net.loss(_events([[1, 2, 3]])), loss)


def test_id_dropout_hides_id_parts_only_while_training() -> None:
    net = _net(id_dropout=0.5)
    net.train()
    torch.manual_seed(1)
    keeps = torch.stack([net._id_keep() for _ in range(50)])
    assert 0.3 < keeps.mean() < 0.7
    net.eval()
    assert torch.all(net._id_keep() == 1)


def test_sampled_softmax_applies_the_logq_correction(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _net(negatives=3)
    drawn = torch.tensor([0, 4, 5])
    monkeypatch.setattr(torch, "multinomial", lambda *a, **k: drawn)
    events = _events([[1, 2]])  # one target: item 1 (token 2)
    loss = net.loss(events)
    users = net.user_proj(net.input_vectors(events[:, :-1], torch.ones(N)))[0, -1]
    items = net.id_out_proj(net.id_out.weight) + net.text_out(net.text_vectors)
    q = torch.arange(1, N + 1, dtype=torch.float32) ** 0.75
    q = q / q.sum()
    log_q = torch.log(q * 3)
    cands = torch.tensor([1, 0, 4, 5])
    logits = items[cands] @ users + net.item_bias[cands] - log_q[cands]
    assert torch.allclose(loss, -torch.log_softmax(logits, 0)[0], atol=1e-6)
    # a negative that is the target itself is not counted against it
    monkeypatch.setattr(torch, "multinomial", lambda *a, **k: torch.tensor([1, 4, 5]))
    again = net.loss(events)
    logits = items[torch.tensor([1, 4, 5])] @ users + net.item_bias[[1, 4, 5]]
    logits = logits - log_q[[1, 4, 5]]
    assert torch.allclose(again, -torch.log_softmax(logits, 0)[0], atol=1e-6)


def test_text_vectors_are_standardised_per_dimension() -> None:
    raw = np.random.default_rng(0).normal(3.0, 5.0, size=(20, 4)).astype(np.float32)
    out = standardise(raw)
    assert np.allclose(out.mean(0), 0, atol=1e-5) and np.allclose(out.std(0), 1, atol=1e-4)


def test_the_llm_is_cut_to_its_first_layers_with_no_vocabulary_head(fresh_llm) -> None:  # noqa: ANN001
    model = fresh_llm.model
    first = model.model.layers[0]
    keep_first_layers(model, 1)
    assert len(model.model.layers) == 1 and model.model.layers[0] is first
    assert model.config.num_hidden_layers == 1
    out = model(inputs_embeds=torch.randn(2, 3, model.config.hidden_size))
    assert out.logits.shape == (2, 3, model.config.hidden_size)  # hidden states, not vocabulary
    with pytest.raises(ValueError, match="decoder stack"):
        keep_first_layers(torch.nn.Linear(2, 2), 1)


def test_targets_ahead_adds_the_later_items_weighted_by_distance() -> None:
    net = _net(targets_ahead=2)
    events = _events([[1, 2, 3, 4]])
    loss = net.loss(events)
    users = net.user_proj(net.input_vectors(events[:, :-1], torch.ones(N)))[0]  # (3, S)
    items = net.id_out_proj(net.id_out.weight) + net.text_out(net.text_vectors)
    logp = torch.log_softmax(users @ items.T + net.item_bias, dim=-1)  # (3, N)
    nll = {(p, t): -logp[p, t - 1] for p in range(3) for t in range(1, 5)}
    # next items 2, 3, 4 (weight 1); the ones after them 3, 4 (weight 1/2); none after 4
    expected = (nll[0, 2] + nll[1, 3] + nll[2, 4] + 0.5 * (nll[0, 3] + nll[1, 4])) / 4.0
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(_net().loss(events), (nll[0, 2] + nll[1, 3] + nll[2, 4]) / 3, atol=1e-6)


def test_exclude_seen_leaves_the_items_read_so_far_out_of_each_positions_softmax() -> None:
    net = _net(exclude_seen=True)
    events = _events([[1, 2, 3, 2]])  # item token 2 comes back as the last target (a repeat)
    loss = net.loss(events)
    users = net.user_proj(net.input_vectors(events[:, :-1], torch.ones(N)))[0]  # (3, S)
    items = net.id_out_proj(net.id_out.weight) + net.text_out(net.text_vectors)
    logits = users @ items.T + net.item_bias  # (3, N)
    hidden = [{1}, {1, 2}, {1, 3}]  # tokens read so far, less the position's own target (2, 3, 2)
    nll = []
    for p, target in enumerate([2, 3, 2]):
        row = logits[p].clone()
        row[[t - 1 for t in hidden[p]]] = float("-inf")
        nll.append(-torch.log_softmax(row, 0)[target - 1])
    assert torch.allclose(loss, sum(nll) / 3, atol=1e-6)
    assert not torch.allclose(_net().loss(events), loss)
    # the sampled softmax drops a seen negative for the rows that have read it
    sampled = _net(exclude_seen=True, negatives=2)
    torch.manual_seed(1)
    assert torch.isfinite(sampled.loss(events))


def test_hidden_bias_scores_an_item_with_a_hidden_id_as_a_cold_one() -> None:
    keep = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    plain, hiding = _net(), _net(hidden_bias=True)
    assert torch.equal(plain.biases(keep), plain.item_bias)  # off: own biases kept
    mean = hiding.item_bias.mean()
    expected = torch.where(keep > 0, hiding.item_bias, mean)
    assert torch.allclose(hiding.biases(keep), expected)
    assert torch.equal(hiding.biases(), hiding.item_bias)  # scoring: every known item its own


def test_seen_history_also_leaves_out_what_was_read_before_the_window() -> None:
    events = _events([[3, 4, 5]])
    prior = torch.tensor([[1, 6, 0]])  # read before the window; 0 pads
    window_only = _net(exclude_seen=True)
    history = _net(exclude_seen=True, seen_history=True)
    assert torch.equal(window_only.loss(events, prior), window_only.loss(events))
    loss = history.loss(events, prior)
    users = history.user_proj(history.input_vectors(events[:, :-1], torch.ones(N)))[0]  # (2, S)
    items = history.id_out_proj(history.id_out.weight) + history.text_out(history.text_vectors)
    logits = users @ items.T + history.item_bias  # (2, N)
    nll = []
    for p, (hidden, target) in enumerate([({1, 6, 3}, 4), ({1, 6, 3, 4}, 5)]):
        row = logits[p].clone()
        row[[t - 1 for t in hidden]] = float("-inf")
        nll.append(-torch.log_softmax(row, 0)[target - 1])
    assert torch.allclose(loss, sum(nll) / 2, atol=1e-6)


def test_zero_text_in_init_starts_as_an_id_model_and_still_learns_the_text_part() -> None:
    net = _net(text_in_init="zero").train()
    events = _events([[1, 2, 3], [4, 2]])
    assert torch.all(net.text_in(net.text_vectors) == 0)  # the input reads ID and views only
    loss = net(events=events)["loss"]
    loss.backward()
    assert net.text_in.weight.grad.abs().sum() > 0  # not stuck at zero
    assert _net().text_in.weight.abs().sum() > 0  # the default start is not zero
    with pytest.raises(ValueError, match="text_in_init"):
        NextItemConfig(text_in_init="small")


def test_text_on_the_output_side_only_keeps_cold_items_scored_from_text() -> None:
    known = np.array([True] * 5 + [False] * 2)
    net = _net(known=known, text_input=False)
    assert net.text_in is None and net.text_out is not None
    events = _events([[1, 2, 3]])
    both = _net(known=known)
    with torch.no_grad():  # same weights except the input text projection
        for name, value in net.state_dict().items():
            both.state_dict()[name].copy_(value)
        both.text_in.weight.zero_()
        both.text_in.bias.zero_()
    assert torch.allclose(net.input_vectors(events, net.known.float()),
                          both.input_vectors(events, both.known.float()))  # fmt: skip
    scores = net.score_last(events)[0]
    # a cold item's score: the user state against its text vector alone, with the mean bias
    user = net.user_states(events, net.known.float())[0, -1]
    cold = 5
    expected = user @ net.text_out(net.text_vectors[cold]) + net.item_bias[:5].mean()
    assert torch.allclose(scores[cold], expected, atol=1e-5)
    with pytest.raises(ValueError, match="text_input"):
        NextItemConfig(text_input="no")


def test_tie_passes_average_the_log_softmax_over_shuffled_orders_of_tied_events() -> None:
    from dataclasses import replace

    from llmrec.nextitem.ensemble import log_softmax
    from llmrec.nextitem.features import shuffle_ties
    from llmrec.nextitem.recommender import NextItemRecommender

    net = _net()
    vocab = EventVocab(0.0, 10.0, gap_buckets=4, time_buckets=4, rating_min=1.0, rating_max=5.0)
    once = NextItemRecommender(net, None, vocab, net.settings, {})
    three = NextItemRecommender(net, None, vocab, replace(net.settings, tie_passes=3), {})
    tied = _events([[1, 2, 3, 4]])[0].numpy()  # gap bucket 2 everywhere: one run of four
    other = _events([[5, 6]])[0].numpy()
    empty = np.zeros((0, 5), dtype=np.int64)
    orders = [tied] + [shuffle_ties(tied, np.random.default_rng(p)) for p in (1, 2)]
    assert len({int(o[-1, 0]) for o in orders}) > 1  # the shuffles change the last event
    single = [once.score_events([o])[0] for o in orders]  # the echo model reads the last one
    expected = log_softmax(np.stack(single)).mean(axis=0)
    got = three.score_events([other, tied, empty])
    np.testing.assert_allclose(got[1], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(three.score_events([tied])[0], got[1], rtol=1e-6)  # per history
    np.testing.assert_allclose(got[2], net.item_counts.numpy())  # no history: popularity
    assert not np.allclose(got[1], log_softmax(single[0][None])[0])
    with pytest.raises(ValueError, match="tie_passes"):
        NextItemConfig(tie_passes=0)
