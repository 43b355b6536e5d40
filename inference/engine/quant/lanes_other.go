//go:build !amd64

package quant

// exactLanes: see lanesAdd.
const exactLanes = false
