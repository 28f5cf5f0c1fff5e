"""The one walker over model outputs: split per image, merge back, map leaves, keep container types."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import pytest
import torch

from ai_service.models import pytree

Heads = namedtuple("Heads", "boxes scores")


def test_split_and_merge_round_trip_every_container():
    tensor = torch.arange(12.0).view(3, 4)
    outputs = {"logits": tensor, "heads": Heads(tensor * 2, [{"k": 1}, {"k": 2}, {"k": 3}]), "pair": (tensor, tensor)}
    parts = pytree.split_batch(outputs, 3)
    assert len(parts) == 3 and isinstance(parts[0]["heads"], Heads)
    assert parts[1]["logits"].shape == (1, 4) and parts[2]["heads"].scores == [{"k": 3}]
    merged = pytree.merge_batches(parts)
    assert torch.equal(merged["logits"], tensor) and torch.equal(merged["heads"].boxes, tensor * 2)
    assert merged["heads"].scores == [{"k": 1}, {"k": 2}, {"k": 3}] and isinstance(merged["pair"], tuple)
    assert pytree.merge_batches([parts[0], parts[2]])["logits"].tolist() == [tensor[0].tolist(), tensor[2].tolist()]


def test_a_plain_tensor_is_sliced_on_dim_zero_and_padding_rows_are_dropped():
    batch = torch.arange(8.0).view(8, 1)
    parts = pytree.split_batch(batch, 5)
    assert len(parts) == 5 and parts[4].tolist() == [[4.0]]
    assert parts[1].data_ptr() == batch[1:2].data_ptr()  # views, no copies on the hot path
    assert torch.equal(pytree.merge_batches(parts), batch[:5])


def test_a_list_holds_one_entry_per_image():
    detections = [{"boxes": torch.zeros(0, 4)}, {"boxes": torch.ones(2, 4)}]
    parts = pytree.split_batch(detections, 2)
    assert parts[1] == [detections[1]] and pytree.merge_batches(parts) == detections


def test_tree_map_rebuilds_containers_with_their_own_types():
    tree = OrderedDict(a=[torch.ones(1), "label"], b=Heads(torch.zeros(1), 3))
    doubled = pytree.tree_map(lambda leaf: leaf * 2 if isinstance(leaf, torch.Tensor) else leaf, tree)
    assert isinstance(doubled, OrderedDict) and isinstance(doubled["b"], Heads) and doubled["a"][1] == "label"
    assert doubled["a"][0].item() == 2.0 and doubled["b"].scores == 3
    assert [type(leaf) for leaf in pytree.leaves(tree)] == [torch.Tensor, str, torch.Tensor, int]


def test_outputs_that_cannot_be_split_say_what_would_work():
    with pytest.raises(TypeError, match="return tensors, lists with one entry per image"):
        pytree.split_batch({"count": 3}, 1)
