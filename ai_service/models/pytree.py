"""The one walker over model outputs and weight holders: nested dicts, lists, tuples and namedtuples of leaves.

Batched outputs follow one rule everywhere (split per image in the engine, merged again for postprocess):
a tensor is batched on dim 0; a list holds one entry per image; a tuple, namedtuple or dict holds several
batched heads, each split and merged by the same rule.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

IsLeaf = Callable[[Any], bool]
Rebuild = Callable[[Iterable[Any]], Any]


def flatten(tree: Any, is_leaf: IsLeaf | None = None) -> tuple[list[Any], Rebuild]:
    """The leaves in order and a function that builds the same structure around new leaves."""
    leaves: list[Any] = []

    def plan(node: Any) -> Callable[[Iterator[Any]], Any]:
        if (is_leaf is not None and is_leaf(node)) or not isinstance(node, (dict, list, tuple)):
            leaves.append(node)
            return next
        if isinstance(node, dict):
            parts = [(key, plan(value)) for key, value in node.items()]
            kind = type(node)
            return lambda it: kind((key, part(it)) for key, part in parts)
        parts_ = [plan(value) for value in node]
        kind_ = type(node)
        if hasattr(node, "_fields"):  # namedtuple: positional constructor
            return lambda it: kind_(*(part(it) for part in parts_))
        return lambda it: kind_(part(it) for part in parts_)

    build = plan(tree)
    return leaves, lambda new: build(iter(new))


def leaves(tree: Any) -> list[Any]:
    """Every leaf of `tree`, depth first."""
    return flatten(tree)[0]


def tree_map(function: Callable[[Any], Any], tree: Any) -> Any:
    """`tree` with `function` applied to every leaf; containers are rebuilt with their own types."""
    if isinstance(tree, torch.Tensor):  # the common case (a plain batch tensor) pays no walk
        return function(tree)
    found, rebuild = flatten(tree)
    return rebuild(function(leaf) for leaf in found)


def split_batch(outputs: Any, count: int) -> list[Any]:
    """Per-image outputs, each still batched (batch dimension of 1, one-entry lists); extra rows are dropped."""
    if isinstance(outputs, torch.Tensor):
        return [outputs[index:index + 1] for index in range(count)]
    found, rebuild = flatten(outputs, _is_list)
    columns = [_split_leaf(leaf, count) for leaf in found]
    return [rebuild(column[index] for column in columns) for index in range(count)]


def merge_batches(parts: Sequence[Any]) -> Any:
    """The inverse of split_batch: per-image (or per-group) outputs back into one batched output."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(list(parts))
    flattened = [flatten(part, _is_list)[0] for part in parts]
    rebuild = flatten(first, _is_list)[1]
    return rebuild(_merge_leaves(column) for column in zip(*flattened))


def _is_list(node: Any) -> bool:
    return isinstance(node, list)


def _split_leaf(leaf: Any, count: int) -> list[Any]:
    if isinstance(leaf, torch.Tensor):
        return [leaf[index:index + 1] for index in range(count)]
    if isinstance(leaf, list):
        return [[item] for item in leaf[:count]]
    raise TypeError(f"cannot split a forward output of type {type(leaf).__name__} per image; return tensors, "
                    "lists with one entry per image, or tuples/dicts of those")


def _merge_leaves(column: Sequence[Any]) -> Any:
    if isinstance(column[0], torch.Tensor):
        return torch.cat(list(column))
    if isinstance(column[0], list):
        return [item for part in column for item in part]
    raise TypeError(f"cannot merge forward outputs of type {type(column[0]).__name__}")
