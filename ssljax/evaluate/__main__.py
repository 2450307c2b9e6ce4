"""`python -m ssljax.evaluate --workdir DIR --protocol knn|linear|fewshot|diagnostics|finetune`."""
from ssljax.evaluate import cli

if __name__ == "__main__":
  cli.main()
