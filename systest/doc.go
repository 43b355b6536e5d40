// Package systest holds Hypha's system tests: real hyphad and inferd
// processes, one appliance per network namespace on a bridged test LAN
// (see internal/systest), exercising what a village mesh relies on:
// routing by cached prefix (issue 5), anonymous requests over cloves
// (issue 6) and the verification committee (issue 9).
package systest
