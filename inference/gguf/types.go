// Package gguf reads and writes GGUF files (versions 2 and 3), the model
// format of llama.cpp.
//
// The reader never trusts the file: every count and length is checked
// against the bytes that remain before anything is allocated, so a hostile
// or truncated file yields an error that names the field and the reason
// instead of a panic or a huge allocation.
//
// A decoded *File is immutable and safe for concurrent readers.
package gguf

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of them; test
// with errors.Is.
var (
	// ErrFormat reports a malformed or truncated file.
	ErrFormat = errors.New("gguf: malformed file")
	// ErrUnsupported reports a well-formed file this package cannot handle
	// (an unknown version, value type or tensor type).
	ErrUnsupported = errors.New("gguf: unsupported")
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the tensor data alignment when general.alignment is absent.
const DefaultAlignment = 32

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types, numbered as in the GGUF specification.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// size is the encoded size of a fixed-size value, 0 for string and array.
func (t ValueType) size() int64 {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// TensorType is a ggml tensor element type.
type TensorType uint32

// Tensor types, numbered as in ggml.h. Only some have a known layout here
// (see BlockSize); the others decode as metadata but cannot be sized.
const (
	TensorF32  TensorType = 0
	TensorF16  TensorType = 1
	TensorQ4_0 TensorType = 2
	TensorQ4_1 TensorType = 3
	TensorQ5_0 TensorType = 6
	TensorQ5_1 TensorType = 7
	TensorQ8_0 TensorType = 8
	TensorQ8_1 TensorType = 9
	TensorQ2_K TensorType = 10
	TensorQ3_K TensorType = 11
	TensorQ4_K TensorType = 12
	TensorQ5_K TensorType = 13
	TensorQ6_K TensorType = 14
	TensorQ8_K TensorType = 15
	TensorI8   TensorType = 24
	TensorI16  TensorType = 25
	TensorI32  TensorType = 26
	TensorI64  TensorType = 27
	TensorF64  TensorType = 28
	TensorBF16 TensorType = 30
)

type layout struct {
	name  string
	block int64 // elements per block
	bytes int64 // bytes per block
}

var layouts = map[TensorType]layout{
	TensorF32:  {"F32", 1, 4},
	TensorF16:  {"F16", 1, 2},
	TensorQ4_0: {"Q4_0", 32, 18},
	TensorQ4_1: {"Q4_1", 32, 20},
	TensorQ5_0: {"Q5_0", 32, 22},
	TensorQ5_1: {"Q5_1", 32, 24},
	TensorQ8_0: {"Q8_0", 32, 34},
	TensorQ8_1: {"Q8_1", 32, 36},
	TensorQ2_K: {"Q2_K", 256, 84},
	TensorQ3_K: {"Q3_K", 256, 110},
	TensorQ4_K: {"Q4_K", 256, 144},
	TensorQ5_K: {"Q5_K", 256, 176},
	TensorQ6_K: {"Q6_K", 256, 210},
	TensorQ8_K: {"Q8_K", 256, 292},
	TensorI8:   {"I8", 1, 1},
	TensorI16:  {"I16", 1, 2},
	TensorI32:  {"I32", 1, 4},
	TensorI64:  {"I64", 1, 8},
	TensorF64:  {"F64", 1, 8},
	TensorBF16: {"BF16", 1, 2},
}

func (t TensorType) String() string {
	if l, ok := layouts[t]; ok {
		return l.name
	}
	return fmt.Sprintf("TensorType(%d)", uint32(t))
}

// BlockSize returns the number of elements per block and the bytes per
// block of t; ok is false for types whose layout is unknown.
func (t TensorType) BlockSize() (elems, bytes int64, ok bool) {
	l, ok := layouts[t]
	return l.block, l.bytes, ok
}

// KV is one metadata key/value pair.
//
// Value holds uint8, int8, uint16, int16, uint32, int32, float32, bool,
// string, uint64, int64 or float64 for scalars. For arrays (Type ==
// TypeArray) Value holds a typed slice ([]uint8 … []float64, []string,
// []bool) of element type ArrayType; nested arrays are []any of such slices.
type KV struct {
	Key       string
	Type      ValueType
	ArrayType ValueType // element type when Type == TypeArray
	Value     any
}

// TensorInfo describes one tensor. Dims are in ggml order: Dims[0] is the
// innermost (contiguous) dimension. Offset is relative to File.DataOffset.
type TensorInfo struct {
	Name   string
	Dims   []uint64
	Type   TensorType
	Offset uint64
}

// Elements returns the number of elements of the tensor.
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Size returns the byte size of the tensor data, or an error when the type
// is unknown or the dimensions are not a whole number of blocks.
func (t *TensorInfo) Size() (int64, error) {
	elems, bytes, ok := t.Type.BlockSize()
	if !ok {
		return 0, fmt.Errorf("tensor %q: type %v: %w", t.Name, t.Type, ErrUnsupported)
	}
	if len(t.Dims) == 0 {
		return bytes, nil
	}
	if t.Dims[0]%uint64(elems) != 0 {
		return 0, fmt.Errorf("tensor %q: row length %d is not a multiple of the %v block size %d: %w", t.Name, t.Dims[0], t.Type, elems, ErrFormat)
	}
	n := uint64(1)
	for _, d := range t.Dims {
		if d != 0 && n > (1<<52)/d {
			return 0, fmt.Errorf("tensor %q: dimensions %v overflow: %w", t.Name, t.Dims, ErrFormat)
		}
		n *= d
	}
	return int64(n/uint64(elems)) * bytes, nil
}
