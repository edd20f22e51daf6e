"""Multi-GPU training: each process draws its own noise and batch, deterministically; every process waits before saving."""

import inspect

import torch

from trainer import train
from trainer.config import TrainConfig


def test_each_process_draws_its_own_noise_and_process_0_draws_what_a_single_process_run_does():
    config = TrainConfig(seed=3)
    draws = [torch.randn(4, generator=train._generator(config, 7, 0, process)) for process in range(3)]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    assert torch.equal(draws[0], torch.randn(4, generator=train._generator(config, 7, 0)))
    again = torch.randn(4, generator=train._generator(config, 7, 0, 1))
    assert torch.equal(again, draws[1])  # a resumed process draws what the unbroken one did


def test_every_process_waits_for_the_others_before_a_state_or_the_lora_is_written():
    source = inspect.getsource(train.train)
    assert source.count("accelerator.wait_for_everyone()") >= 2
    assert source.index("wait_for_everyone") < source.index("_save_state(")
    assert source.rindex("wait_for_everyone") < source.index("write_atomically(")
