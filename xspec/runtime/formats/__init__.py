"""One module per built-in data format, each registered with its spec model in
`xspec.spec.tables.data` and implementing `xspec.runtime.data.DataFormat`."""
