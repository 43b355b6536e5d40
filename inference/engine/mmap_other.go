//go:build !unix

package engine

func mapFile(path string, size int64) ([]byte, func() error, error) { return fileBytes(path, size) }
