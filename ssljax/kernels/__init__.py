"""Kernels for the two hot spots of SSL pretraining, each with an `impl=` switch.

  attention     dot_product_attention(q, k, v, key_mask=None, impl='auto'): flash attention
                ([B, L, H, Dh]; online softmax, custom_vjp recomputing tiles).
  contrastive   similarity_lse / sigmoid_pair_sums / positive_logits and info_nce_loss,
                nt_xent_loss, sigmoid_loss on normalised inputs: tiled q k^T with an online
                logsumexp, O(N) memory, custom_vjp recomputing tiles.
  distributed   the contrastive losses under shard_map: each device's rows against all keys,
                by all_gather or a ppermute ring.

'reference' is plain jnp (the spec); 'xla' is the tiled algorithm as lax loops (fast path on CPU);
'pallas' is Pallas kernels (Triton on GPU, interpret=True on CPU); 'auto' = pallas on GPU, else xla.
"""
