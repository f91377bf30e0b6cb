"""ENAS's LSTM controller for cells of one op per edge (FAMILY.md "Sampling: ENAS", after AutoDL's
`xautodl/models/cell_searchs/search_model_enas_utils.py:Controller`).

A learned input x_0 feeds a stacked LSTM (zero initial state); at decision t the top layer's output o_t gives
logits ℓ_t = c·tanh(W o_t / T) (tanh constant c, temperature T), the op a_t ~ softmax(ℓ_t), and the next input
is the op's embedding. So no op's probability exceeds 1 / (1 + (n-1)·e^{-2c}) for n ops.

Init: U(-0.1, 0.1) for x_0, the first LSTM layer's input and hidden weights, the embedding and W; every other
tensor keeps PyTorch's default distribution (U(±1/√hidden) for the LSTM's deeper weights and all its biases,
U(±1/√hidden) for W's bias), all drawn from one generator so a seed fixes the controller.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Controller(nn.Module):
    """Samples `decisions` ops among `num_ops`, one after another, each conditioned on the earlier ones."""

    def __init__(
        self, decisions: int, num_ops: int, *, hidden: int = 32, layers: int = 2, temperature: float = 5.0,
        tanh_constant: float = 2.5, generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if decisions < 1 or num_ops < 2 or hidden < 1 or layers < 1:
            raise ValueError(
                f"the controller needs decisions >= 1, num_ops >= 2, hidden >= 1 and layers >= 1; got {decisions}, "
                f"{num_ops}, {hidden}, {layers}"
            )
        if not temperature > 0 or not tanh_constant > 0:
            raise ValueError(f"temperature and tanh_constant must be > 0, got {temperature}, {tanh_constant}")
        self.decisions, self.num_ops = decisions, num_ops
        self.temperature, self.tanh_constant = temperature, tanh_constant
        self.start = nn.Parameter(torch.empty(1, 1, hidden))
        self.lstm = nn.LSTM(hidden, hidden, layers)
        self.embedding = nn.Embedding(num_ops, hidden)
        self.head = nn.Linear(hidden, num_ops)
        self._init(generator)

    def _init(self, generator: torch.Generator | None) -> None:
        default = 1.0 / math.sqrt(self.lstm.hidden_size)
        small = {"start", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "embedding.weight", "head.weight"}
        with torch.no_grad():
            for name, param in self.named_parameters():
                bound = 0.1 if name in small else default
                param.uniform_(-bound, bound, generator=generator)

    def logits(self, output: torch.Tensor) -> torch.Tensor:
        return self.tanh_constant * torch.tanh(self.head(output) / self.temperature)

    def forward(
        self, samples: int = 1, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, ...]]]:
        """`samples` independent cells drawn side by side (one batched LSTM pass): per sample Σ_t log p(a_t) and
        Σ_t entropy_t, both (samples,) with gradient, and its ops (a_0, ...)."""
        x, state = self.start.expand(1, samples, -1), None
        log_prob = torch.zeros(samples)
        entropy = torch.zeros(samples)
        ops = []
        for _ in range(self.decisions):
            output, state = self.lstm(x, state)
            log_p = torch.log_softmax(self.logits(output[-1]), dim=-1)  # (samples, ops)
            op = torch.multinomial(log_p.detach().exp(), 1, generator=generator)  # (samples, 1)
            log_prob = log_prob + log_p.gather(-1, op).squeeze(-1)
            entropy = entropy - (log_p.exp() * log_p).sum(dim=-1)
            ops.append(op.squeeze(-1))
            x = self.embedding(op.T)
        return log_prob, entropy, [tuple(cell) for cell in torch.stack(ops, dim=1).tolist()]

    def log_probs(self, cells: torch.Tensor) -> torch.Tensor:
        """log p of every row of `cells` ((n, decisions) op indices), teacher-forced in one batched pass."""
        n = cells.shape[0]
        inputs = torch.cat([self.start.expand(1, n, -1), self.embedding(cells[:, :-1].T)], dim=0)
        output, _ = self.lstm(inputs)
        log_p = torch.log_softmax(self.logits(output), dim=-1)  # (decisions, n, ops)
        return log_p.gather(-1, cells.T.unsqueeze(-1)).squeeze(-1).sum(dim=0)

    def greedy(self) -> tuple[int, ...]:
        """The most probable op at each decision given the earlier greedy ones (no sampling)."""
        x, state, ops = self.start, None, []
        with torch.no_grad():
            for _ in range(self.decisions):
                output, state = self.lstm(x, state)
                op = int(self.logits(output[-1, 0]).argmax())
                ops.append(op)
                x = self.embedding.weight[op].view(1, 1, -1)
        return tuple(ops)
