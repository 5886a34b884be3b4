"""``python -m jetgen.cli`` (what torchrun and the tests launch)."""
from jetgen.cli import main

main()
