"""``python -m midlevel`` (and ``torchrun --nproc_per_node N -m midlevel train ...``): the command line."""

from .cli import main

raise SystemExit(main())
