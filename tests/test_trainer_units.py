"""The trainer's pure parts: the DPO loss against hand-computed values, config, data errors, checkpoints."""

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import png_bytes
from trainer.carry_over import carry_over_test, untrained
from trainer.checkpoints import complete_states, is_complete, prune_states, write_atomically
from trainer.config import TrainConfig
from trainer.data import DatasetError, load_pairs
from trainer.objectives import LN2, dpo_loss, flow_matching_inputs, logit_normal_sigmas, per_sample_error


def test_dpo_loss_is_ln2_when_policy_equals_reference():
    err = torch.tensor([0.3, 0.7])
    terms = dpo_loss(err, err.flip(0), err, err.flip(0), beta=2000)
    assert terms.loss.item() == pytest.approx(LN2) and terms.margin.item() == 0 and terms.implicit_accuracy.item() == 0


def test_dpo_loss_matches_hand_computed_values():
    # pair 1: policy improved the winner by 0.001 and worsened the loser by 0.001 → inside = −1000·(−0.002) = 2
    # pair 2: the reverse → inside = −2
    policy_w, policy_l = torch.tensor([0.099, 0.101]), torch.tensor([0.201, 0.199])
    ref_w, ref_l = torch.tensor([0.100, 0.100]), torch.tensor([0.200, 0.200])
    terms = dpo_loss(policy_w, policy_l, ref_w, ref_l, beta=2000)
    expected = (-math.log(1 / (1 + math.exp(-2))) - math.log(1 / (1 + math.exp(2)))) / 2
    assert terms.loss.item() == pytest.approx(expected, rel=1e-4)
    assert terms.implicit_accuracy.item() == 0.5
    assert terms.margin.item() == pytest.approx(0.0, abs=1e-3)
    one = dpo_loss(policy_w[:1], policy_l[:1], ref_w[:1], ref_l[:1], beta=2000)
    assert one.loss.item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-4)
    assert one.margin.item() == pytest.approx(2.0, rel=1e-3) and one.implicit_accuracy.item() == 1.0



def test_the_winner_term_adds_lambda_times_the_winners_error_change():
    # pair 1 as above (inside = 2) with λ = 50: the winner's error fell by 0.001 → the loss falls by 0.05
    policy_w, policy_l = torch.tensor([0.099]), torch.tensor([0.201])
    ref_w, ref_l = torch.tensor([0.100]), torch.tensor([0.200])
    plain = dpo_loss(policy_w, policy_l, ref_w, ref_l, beta=2000)
    anchored = dpo_loss(policy_w, policy_l, ref_w, ref_l, beta=2000, sft_weight=50.0)
    assert anchored.loss.item() == pytest.approx(math.log(1 + math.exp(-2)) - 0.05, rel=1e-4)
    assert anchored.margin.item() == pytest.approx(plain.margin.item())
    assert anchored.implicit_accuracy.item() == plain.implicit_accuracy.item()


def test_the_winner_floor_penalises_only_a_winner_denoised_worse_than_by_the_reference():
    # The winner's error rose by 0.001 and the loser's by 0.003: inside = −1000·(0.001 − 0.003) = 2, and with μ = 1
    # the floor takes 1000·1·0.001 = 1 off it; a winner whose error fell (the pair of the test above) is left alone.
    ref_w, ref_l = torch.tensor([0.100]), torch.tensor([0.200])
    worse = dpo_loss(torch.tensor([0.101]), torch.tensor([0.203]), ref_w, ref_l, beta=2000, winner_floor=1.0)
    assert worse.margin.item() == pytest.approx(1.0, rel=1e-3)
    assert worse.loss.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-4)
    better = dpo_loss(torch.tensor([0.099]), torch.tensor([0.201]), ref_w, ref_l, beta=2000, winner_floor=1.0)
    assert better.loss.item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-4)
    with pytest.raises(ValueError, match="winner_floor"):
        TrainConfig.from_dict({"winner_floor": -1})


def test_the_anchor_adds_gamma_times_the_mean_error_change_of_both_images_and_leaves_the_gap_alone():
    # Both errors rose (winner by 0.001, loser by 0.003): inside = 2 as above; with γ = 100 the loss rises by
    # 100 · (0.001 + 0.003) / 2 = 0.2. Errors that both fell (winner by 0.003, loser by 0.001) lower it by as much.
    ref_w, ref_l = torch.tensor([0.100]), torch.tensor([0.200])
    plain = dpo_loss(torch.tensor([0.101]), torch.tensor([0.203]), ref_w, ref_l, beta=2000)
    anchored = dpo_loss(torch.tensor([0.101]), torch.tensor([0.203]), ref_w, ref_l, beta=2000, anchor_weight=100.0)
    assert anchored.loss.item() == pytest.approx(math.log(1 + math.exp(-2)) + 0.2, rel=1e-4)
    assert anchored.dpo.item() == pytest.approx(plain.dpo.item()) and anchored.margin.item() == plain.margin.item()
    fitter = dpo_loss(torch.tensor([0.097]), torch.tensor([0.199]), ref_w, ref_l, beta=2000, anchor_weight=100.0)
    assert fitter.loss.item() == pytest.approx(math.log(1 + math.exp(-2)) - 0.2, rel=1e-4)
    with pytest.raises(ValueError, match="anchor_weight"):
        TrainConfig.from_dict({"anchor_weight": -1})


def test_errors_and_flow_matching_inputs():
    x0, noise = torch.zeros(2, 4, 2, 2), torch.ones(2, 4, 2, 2)
    noisy, target = flow_matching_inputs(x0, noise, torch.tensor([0.25, 1.0]))
    assert torch.allclose(noisy[0], torch.full((4, 2, 2), 0.25)) and torch.allclose(noisy[1], noise[1])
    assert torch.equal(target, noise - x0)
    assert per_sample_error(torch.ones(2, 3), torch.tensor([[1.0, 1, 1], [0, 0, 0]])).tolist() == [0.0, 1.0]
    sigmas = logit_normal_sigmas(1000, mean=0.0, std=1.0, generator=torch.Generator().manual_seed(0))
    assert 0 < sigmas.min() and sigmas.max() < 1 and abs(sigmas.median().item() - 0.5) < 0.05


def test_epsilon_flow_errors_are_the_errors_of_the_implied_noise_prediction():
    """x_t = (1 − σ)·x0 + σ·ε and ε̂ = x_t + (1 − σ)·v̂: the noise error is (1 − σ) times the velocity error."""
    from types import SimpleNamespace

    from trainer.families import FluxFamily

    generator = torch.Generator().manual_seed(1)
    x0, noise, velocity = (torch.randn(3, 4, 2, 2, generator=generator) for _ in range(3))
    sigmas = torch.tensor([0.1, 0.5, 0.9])
    noisy, target = flow_matching_inputs(x0, noise, sigmas)
    noise_prediction = noisy + (1 - sigmas.view(-1, 1, 1, 1)) * velocity
    pipeline = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(guidance_embeds=True)))
    family = FluxFamily(pipeline, max_sequence_length=None, logit_mean=0, logit_std=1, flow_errors="epsilon")
    weighted = per_sample_error(velocity, target) * family.error_weights(sigmas)
    assert torch.allclose(weighted, per_sample_error(noise_prediction, noise), rtol=1e-5)
    velocity_family = FluxFamily(pipeline, max_sequence_length=None, logit_mean=0, logit_std=1)
    assert velocity_family.error_weights(sigmas) is None
    with pytest.raises(ValueError, match="flow_errors must be"):
        TrainConfig.from_dict({"flow_errors": "x0"})


def test_config_from_yaml_and_family_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("beta: 4000\nsteps: 10\nreference: base\n")
    config = TrainConfig.from_yaml(path)
    flux = config.resolved("flux")
    assert flux.beta == 4000 and flux.learning_rate == pytest.approx(1e-4 * 2000 / 4000) and flux.alpha == 8
    assert TrainConfig().resolved("sd").beta == 2500
    with pytest.raises(ValueError, match="Unknown training settings: lr"):
        TrainConfig.from_dict({"lr": 1})
    with pytest.raises(ValueError, match="reference must be"):
        TrainConfig.from_dict({"reference": "grandparent"})


def test_the_carry_over_test_is_wilcoxons_exact_signed_rank_tail_and_keeps_nothing_when_it_fails():
    # Ten pairs: the p-value is the share of the 2^10 equally likely sign patterns of the ranks (labels that are coin
    # flips) whose positive rank sum reaches the observed one.
    sizes = torch.tensor([0.3, 2.0, 0.7, 5.0, 1.1, 0.2, 3.3, 0.9, 4.1, 1.6], dtype=torch.float64)
    signs = torch.tensor([1, 1, -1, 1, 1, -1, 1, -1, 1, 1], dtype=torch.float64)
    ranks = sizes.argsort().argsort() + 1
    observed = int(ranks[signs > 0].sum())
    reached = sum(sum(r for bit, r in enumerate(ranks.tolist()) if pattern >> bit & 1) >= observed
                  for pattern in range(2 ** 10))
    # Each pair's margin averaged over its draws: (10 pairs, 3 draws) with one draw a pair against the mean.
    margins = (signs * sizes).unsqueeze(1) * torch.tensor([[3.0, -1.0, 1.0]])
    test = carry_over_test(margins=margins, alpha=0.05)
    assert test.p_value == pytest.approx(reached / 2 ** 10) and (test.correct, test.pairs, test.draws) == (7, 10, 3)

    # Sizes count, not only signs: the 22 largest of 34 margins leaning towards their labels carry over (a count of
    # signs would need 23); 23 of 34 leaning so, with the 11 largest against, do not.
    sizes = torch.arange(1, 35, dtype=torch.float64).unsqueeze(1)
    largest = carry_over_test(margins=torch.where(sizes > 12, sizes, -sizes), alpha=0.05)
    smallest = carry_over_test(margins=torch.where(sizes <= 23, sizes, -sizes), alpha=0.05)
    assert (largest.correct, largest.carried, smallest.correct, smallest.carried) == (22, True, 23, False)
    assert largest.p_value < 0.001 and smallest.p_value > 0.5
    assert "23 of 34" in smallest.sentence() and "> α 0.05" in smallest.sentence()
    assert carry_over_test(margins=torch.zeros(34, 8), alpha=0.05).p_value == 1.0  # an untrained adapter
    assert carry_over_test(margins=torch.ones(5, 1), alpha=0.05).p_value == pytest.approx(1 / 32)
    lora = {"x.lora_A.weight": torch.ones(2, 3), "x.lora_B.weight": torch.ones(3, 2)}
    kept = untrained(lora)
    assert torch.equal(kept["x.lora_A.weight"], lora["x.lora_A.weight"]) and not kept["x.lora_B.weight"].any()


@pytest.mark.parametrize(("asked", "message"), [
    ({"carry_over_alpha": 1.5}, "between 0 and 1"),
    ({"carry_over_alpha": 0.05, "keep": "best"}, "use it with keep: last"),
    ({"carry_over_alpha": 0.05, "heldout_fraction": 0}, "heldout_fraction above 0"),
])
def test_a_carry_over_test_that_cannot_be_run_as_asked_is_refused(asked, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(asked)


def write_pairs(path, labels):
    rows = [{"caption": f"c{i}", "jpg_0": png_bytes((i, 0, 0)), "jpg_1": png_bytes((0, i, 0)), "label_0": label}
            for i, label in enumerate(labels)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_ties_are_left_out_and_winners_come_first(tmp_path):
    pairs, ties = load_pairs(write_pairs(tmp_path / "p.parquet", [1.0, 0.0, 0.5]))
    assert ties == 1 and len(pairs) == 2
    assert pairs[0].winner.getpixel((0, 0)) == (0, 0, 0) and pairs[1].winner.getpixel((0, 0)) == (0, 1, 0)


def test_a_dataset_of_only_ties_or_nothing_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="only ties"):
        load_pairs(write_pairs(tmp_path / "t.parquet", [0.5, 0.5]))
    empty = pa.table({"caption": pa.array([], pa.string()), "jpg_0": pa.array([], pa.binary()),
                      "jpg_1": pa.array([], pa.binary()), "label_0": pa.array([], pa.float64())})
    pq.write_table(empty, tmp_path / "e.parquet")
    with pytest.raises(DatasetError, match="no pairs"):
        load_pairs(tmp_path / "e.parquet")
    with pytest.raises(DatasetError, match="lacks column"):
        pq.write_table(pa.table({"caption": ["x"]}), tmp_path / "x.parquet")
        load_pairs(tmp_path / "x.parquet")


def test_checkpoints_appear_whole_or_not_at_all(tmp_path):
    def good(folder):
        (folder / "weights.bin").write_bytes(b"1234")

    def broken(folder):
        (folder / "weights.bin").write_bytes(b"12")
        raise OSError("disk full")

    target = write_atomically(tmp_path / "ckpt", good, meta={"step": 5})
    assert is_complete(target) and json.loads((target / "COMPLETE").read_text()) == {"step": 5}
    with pytest.raises(OSError):
        write_atomically(tmp_path / "other", broken)
    assert not (tmp_path / "other").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary folder left behind


def test_only_complete_states_count_and_pruning_keeps_the_newest(tmp_path):
    states = tmp_path / "states"
    for step in (100, 200, 300):
        write_atomically(states / f"step-{step:06d}", lambda f: None)
    (states / "step-000400").mkdir()  # a state whose writer died before the marker
    assert [s for s, _ in complete_states(states)] == [100, 200, 300]
    prune_states(states, keep=2)
    assert sorted(p.name for p in states.iterdir()) == ["step-000200", "step-000300"]


def test_weights_are_read_and_draw_batches_in_proportion(tmp_path):
    import torch

    from trainer.config import TrainConfig
    from trainer.train import _batch_indices, pair_weights

    rows = [{"caption": f"c{i}", "jpg_0": png_bytes((i, 0, 0)), "jpg_1": png_bytes((0, i, 0)), "label_0": 1.0,
             "weight": w} for i, w in enumerate([1.0, 0.0, 3.0])]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "w.parquet")
    pairs, _ = load_pairs(tmp_path / "w.parquet")
    assert [p.weight for p in pairs] == [1.0, 0.0, 3.0]
    assert pair_weights(load_pairs(write_pairs(tmp_path / "u.parquet", [1.0, 0.0]))[0]) is None  # no column: uniform
    config = TrainConfig(batch_size=64)
    drawn = torch.cat([_batch_indices(3, config, step, 0, 0, pair_weights(pairs)) for step in range(50)])
    counts = torch.bincount(drawn, minlength=3).tolist()
    assert counts[1] == 0 and 2.5 < counts[2] / counts[0] < 3.5
    rows[0]["weight"] = rows[2]["weight"] = 0.0
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "z.parquet")
    with pytest.raises(DatasetError, match="weight of 0"):
        load_pairs(tmp_path / "z.parquet")
