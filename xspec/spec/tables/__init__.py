"""The spec's tables, one module per TOML table; `xspec.spec.schema` assembles the `Spec`."""
