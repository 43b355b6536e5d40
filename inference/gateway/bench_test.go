package gateway

var benchDir string
