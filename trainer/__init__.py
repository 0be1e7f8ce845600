"""The trainer: LoRA fine-tuning with torch, transformers and peft, run by arq workers.

Importing the package sets OpenMP's wait policy to passive for this process, unless the
environment already chooses one; it must happen before torch loads OpenMP, and every trainer
process (worker, rank, benchmark) imports this package first. A spinning OpenMP thread keeps its
core busy between parallel regions; where a trainer shares the cores with a vLLM server, a second
job or anything else, the spinning threads fight the working ones: on 2 cores shared with other
training, a SmolLM2-135M step took about 22 s spinning and 6 s passive.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
