"""The vocabulary every part shares: TensorDict keys and the product's errors; imports nothing of ours."""
