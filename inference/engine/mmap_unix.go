//go:build unix

package engine

import (
	"fmt"
	"syscall"
)

// mapFile maps the file read-only; the returned function unmaps it.
func mapFile(path string, size int64) ([]byte, func() error, error) {
	if size == 0 || size != int64(int(size)) {
		return fileBytes(path, size)
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	defer syscall.Close(fd)
	b, err := syscall.Mmap(fd, 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fileBytes(path, size)
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}
