"""TPM-CL: DMAE + NegNCE + Triplet Partial Margin contrastive learning for text-video retrieval."""
