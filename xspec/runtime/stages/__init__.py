"""One module per built-in node kind (registered in `xspec.compiler.kinds`). Each stage reads
its typed config (`ctx.cfg`) and what its dependencies hand on (`xspec.runtime.handoffs`) and
writes its own run folder; `xspec.runtime.node` handles status and failures. A node cleaning can
start from (select, shrink_perturb, a plugin's) writes `selected.json`."""
