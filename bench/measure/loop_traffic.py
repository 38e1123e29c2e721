"""The memory traffic of a compiled program's loops, counted from its optimised HLO.

An elementwise update moves at least what it must read and write (the analytic bytes of
``optimizers.analytic``), but XLA may split it into several loops that each stream their
operands from memory: optax's Adam becomes three loops on XLA:CPU (first moment, second
moment, parameters) that move 40 bytes per parameter where 28 would do. Counting each
top-level operation's operands and results once tells the two apart: a program achieving
the copy bandwidth on its own loop bytes is as fast as its loop structure allows, whatever
its analytic ratio says. XLA's own ``bytes accessed`` counts every fused instruction's
operands and over-counts on CPU.
"""

from __future__ import annotations

import re

# Bytes per element of HLO's primitive types.
_ELEMENT_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
    "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}
# Operations that move no data of their own: aliases, views, constants, control.
_FREE = {"parameter", "get-tuple-element", "tuple", "bitcast", "constant", "after-all",
         "opt-barrier"}
_ARRAY = re.compile(r"\b(" + "|".join(_ELEMENT_BYTES) + r")\[([0-9,]*)\]")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([a-z][\w\-]*)\((.*)$")


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape: an array (``f32[10,3]{1,0}``) or a tuple of them."""
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        count = 1
        for dim in filter(None, dims.split(",")):
            count *= int(dim)
        total += count * _ELEMENT_BYTES[dtype]
    return total


def _entry_lines(hlo: str) -> list[str]:
    lines = hlo.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ENTRY")), None)
    if start is None:
        return []
    body = []
    for line in lines[start + 1:]:
        if line.startswith("}"):
            break
        body.append(line)
    return body


def loop_bytes(hlo: str) -> int | None:
    """Bytes the entry computation's operations read and write, each operand and result once
    per operation; None when the entry runs a while loop (its body's traffic depends on the
    trip count) or holds no operation."""
    shapes: dict[str, int] = {}
    total, counted = 0, 0
    for line in _entry_lines(hlo):
        match = _INSTRUCTION.match(line)
        if match is None:
            continue
        name, shape, opcode, rest = match.groups()
        shapes[name] = shape_bytes(shape)
        if opcode == "while":
            return None
        if opcode in _FREE:
            continue
        operands = set(re.findall(r"%([\w.\-]+)", rest.split(")", 1)[0]))
        total += shapes[name] + sum(shapes.get(op, 0) for op in operands)
        counted += 1
    return total if counted else None
