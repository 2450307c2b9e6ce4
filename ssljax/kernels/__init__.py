"""Kernels for the two hot spots of SSL pretraining, each with an `impl=` switch.

  attention     dot_product_attention(q, k, v, key_mask=None, impl='auto'): flash attention
                ([B, L, H, Dh]; online softmax, custom_vjp recomputing tiles); on TPU JAX's
                splash attention (plain XLA attention for sequences of one 128-row tile).
  contrastive   similarity_lse / sigmoid_pair_sums / positive_logits and info_nce_loss,
                nt_xent_loss, sigmoid_loss on normalised inputs: tiled q k^T with an online
                logsumexp, O(N) memory, custom_vjp recomputing tiles.
  distributed   the contrastive losses under shard_map: each device's rows against all keys,
                by all_gather or a ppermute ring.
  sharding      the one helper that runs a kernel call under shard_map over the traced mesh.

'reference' is plain jnp (the spec); 'xla' is the tiled algorithm as lax loops (fast path on CPU);
'pallas' is Pallas kernels (Triton on GPU, Mosaic on TPU, the interpreter on CPU); 'auto' is xla
on CPU and the compiled kernels on GPU and TPU (attention.choose_kernel has the full table).
"""
