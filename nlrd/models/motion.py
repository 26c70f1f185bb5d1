"""Motion embedding: a BiLSTM auto-encoder between sequences of pose latents and one motion vector v."""

from __future__ import annotations

import torch
from torch import nn

from nlrd.models.layers import bounded


class MotionAE(nn.Module):
    """``E_m``: ``(B, T, latent_dim)`` pose latents -> ``(B, embed_dim)`` v; ``D_m``: v -> latents again.

    Training goes through the frozen pose decoder, so v only needs to carry what changes the poses.
    """

    def __init__(self, latent_dim: int = 32, hidden: int = 128, embed_dim: int = 128, num_layers: int = 2) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.embed_dim = embed_dim
        self.num_layers = num_layers
        self.encoder_rnn = nn.LSTM(latent_dim, hidden, num_layers=num_layers, batch_first=True, bidirectional=True)
        self.to_embedding = nn.Linear(2 * hidden, embed_dim)
        self.to_state = nn.Linear(embed_dim, 2 * num_layers * hidden)
        self.decoder_rnn = nn.LSTM(embed_dim, hidden, num_layers=num_layers, batch_first=True)
        self.to_latent = nn.Linear(hidden, latent_dim)

    def encode(self, z_seq: torch.Tensor) -> torch.Tensor:
        """``(B, T, latent_dim)`` -> ``(B, embed_dim)`` in ``(-10, 10)``, from both directions' final states."""
        _, (h, _) = self.encoder_rnn(z_seq)
        last = torch.cat([h[-2], h[-1]], dim=-1)  # top layer, forward and backward
        return bounded(self.to_embedding(last))

    def decode(self, v: torch.Tensor, length: int) -> torch.Tensor:
        """``(B, embed_dim)`` -> ``(B, length, latent_dim)`` in ``(-10, 10)``; v seeds the state and feeds each step."""
        state = self.to_state(v).unflatten(-1, (2, self.num_layers, self.hidden)).permute(1, 2, 0, 3)
        h0, c0 = state[0].contiguous(), state[1].contiguous()
        out, _ = self.decoder_rnn(v[:, None, :].expand(-1, length, -1), (torch.tanh(h0), c0))
        return bounded(self.to_latent(out))

    def forward(self, z_seq: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``D_m(E_m(z_seq))``, ``(B, T, latent_dim)``."""
        return self.decode(self.encode(z_seq), z_seq.shape[1])
