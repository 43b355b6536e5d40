package gguf

import (
	"fmt"
	"io"
)

// Lookup returns the metadata entry for key.
func (f *File) Lookup(key string) (KV, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return KV{}, false
	}
	return f.KV[i], true
}

// String returns the string value of key.
func (f *File) String(key string) (string, bool) {
	kv, _ := f.Lookup(key)
	s, ok := kv.Value.(string)
	return s, ok
}

// Uint returns the value of key when it is a non-negative integer of any
// integer type.
func (f *File) Uint(key string) (uint64, bool) {
	kv, _ := f.Lookup(key)
	switch v := kv.Value.(type) {
	case uint8:
		return uint64(v), true
	case uint16:
		return uint64(v), true
	case uint32:
		return uint64(v), true
	case uint64:
		return v, true
	case int8:
		return uint64(v), v >= 0
	case int16:
		return uint64(v), v >= 0
	case int32:
		return uint64(v), v >= 0
	case int64:
		return uint64(v), v >= 0
	}
	return 0, false
}

// Float returns the value of key when it is a float32 or float64.
func (f *File) Float(key string) (float64, bool) {
	kv, _ := f.Lookup(key)
	switch v := kv.Value.(type) {
	case float32:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// Bool returns the boolean value of key.
func (f *File) Bool(key string) (bool, bool) {
	kv, _ := f.Lookup(key)
	b, ok := kv.Value.(bool)
	return b, ok
}

// Strings returns the value of key when it is an array of strings. The
// slice is shared; do not modify it.
func (f *File) Strings(key string) ([]string, bool) {
	kv, _ := f.Lookup(key)
	s, ok := kv.Value.([]string)
	return s, ok
}

// Float32s returns the value of key when it is an array of float32. The
// slice is shared; do not modify it.
func (f *File) Float32s(key string) ([]float32, bool) {
	kv, _ := f.Lookup(key)
	s, ok := kv.Value.([]float32)
	return s, ok
}

// Int32s returns the value of key when it is an array of int32. The slice
// is shared; do not modify it.
func (f *File) Int32s(key string) ([]int32, bool) {
	kv, _ := f.Lookup(key)
	s, ok := kv.Value.([]int32)
	return s, ok
}

// Tensor returns the description of the named tensor.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// TensorRange returns the absolute byte offset and length of the data of t.
func (f *File) TensorRange(t *TensorInfo) (off, n int64, err error) {
	n, err = t.Size()
	if err != nil {
		return 0, 0, fmt.Errorf("gguf: %s: %w", f.name, err)
	}
	return f.DataOffset + int64(t.Offset), n, nil
}

// ReadTensor reads the raw data of the named tensor.
func (f *File) ReadTensor(name string) ([]byte, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("gguf: %s: tensor %q: not found: %w", f.name, name, ErrFormat)
	}
	off, n, err := f.TensorRange(t)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if m, err := f.r.ReadAt(b, off); err != nil && !(err == io.EOF && m == len(b)) {
		return nil, fmt.Errorf("gguf: %s: tensor %q: read: %w", f.name, name, err)
	}
	return b, nil
}
