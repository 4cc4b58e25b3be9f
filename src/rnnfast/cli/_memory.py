"""Refusing a run that cannot fit in memory before it starts, rather than after minutes of
allocating (or being killed by the kernel's OOM killer)."""

from __future__ import annotations


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(needed: int, what: str) -> None:
    """Raises MemoryError naming `what` when `needed` bytes exceed what is available."""
    available = available_memory()
    if available is not None and needed > available:
        raise MemoryError(
            f"{what} needs about {needed / 2**30:.1f} GiB; "
            f"{available / 2**30:.1f} GiB are available"
        )


def recurrent_model_bytes(
    gates: int, inputs: int, hidden: int, layers: int, outputs: int, optimizer_states: int
) -> int:
    """float32 parameters, gradients and optimiser state of a recurrent stack with a Linear
    head, plus the float64 scratch of initialising its largest weight."""
    params = gates * hidden * (inputs + hidden + 2)
    params += (layers - 1) * gates * hidden * (2 * hidden + 2)
    params += outputs * (hidden + 1)
    return 4 * params * (2 + optimizer_states) + 8 * gates * hidden * max(inputs, hidden)


def sequence_bytes(gates: int, inputs: int, hidden: int, layers: int, outputs: int) -> int:
    """float32 bytes one sequence step costs in training: its input, the tape (gates and
    states per layer), the outputs and the head's logits."""
    return 4 * (inputs + layers * (gates + 3) * hidden + 2 * outputs)
