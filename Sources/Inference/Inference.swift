// Inference: tensors on OpenBLAS, checkpoint loading, tokenizers, PairRM and GenFuser.
// Knows nothing of Kafka or PostgreSQL. Built out by the inference issues.
