package upstream

// rawSyscalls: RawIO reads and writes through rawRead and rawWrite.
const rawSyscalls = true
