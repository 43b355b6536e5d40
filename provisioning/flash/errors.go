package flash

import "errors"

// Sentinel errors of Flash and Check; returned errors wrap them with the
// device, the image and what was found.
var (
	// ErrSystemDisk: the target holds the running system's root filesystem.
	ErrSystemDisk = errors.New("refusing to write to the system disk")
	// ErrMounted: the target or one of its partitions is mounted or used as swap.
	ErrMounted = errors.New("refusing to write to a mounted disk")
	// ErrPartition: the target is a partition; an image needs the whole disk.
	ErrPartition = errors.New("target is a partition, not a whole disk")
	// ErrNotDevice: the target is neither a block device nor a regular file.
	ErrNotDevice = errors.New("target is not a block device or a regular file")
	// ErrTooSmall: the image does not fit on the target.
	ErrTooSmall = errors.New("image larger than the target")
	// ErrSameFile: image and target are the same file.
	ErrSameFile = errors.New("image and target are the same file")
	// ErrInterrupted: the copy stopped before the end (cancelled or I/O
	// error); the target holds a partial image and will not boot.
	ErrInterrupted = errors.New("flash interrupted: the target holds a partial image")
	// ErrVerify: what was read back differs from the image.
	ErrVerify = errors.New("read-back verification failed")
)
