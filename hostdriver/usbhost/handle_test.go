//go:build cgo

package usbhost

import (
	"reflect"
	"testing"

	"github.com/google/gousb"
	"github.com/stretchr/testify/require"
)

// TestDeviceHandleField pins what deviceHandle reads: gousb.Device's
// unexported handle, a pointer (gousb v1.1.3).
func TestDeviceHandleField(t *testing.T) {
	f, ok := reflect.TypeFor[gousb.Device]().FieldByName("handle")
	require.True(t, ok, "gousb.Device has a handle field")
	require.Equal(t, reflect.Pointer, f.Type.Kind())
	_, err := deviceHandle(&gousb.Device{})
	require.ErrorIs(t, err, ErrIO, "a closed device has no handle")
}
