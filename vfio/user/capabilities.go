package user

// The JSON object carried by VERSION: {"capabilities": {...}}.
// wire_version.go owns the bytes around it (major, minor, the terminating
// NUL); this file owns the JSON text.

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// JSON member names, as the protocol spells them.
const (
	jsonCapabilities    = "capabilities"
	jsonMaxMsgFDs       = "max_msg_fds"
	jsonMaxDataXferSize = "max_data_xfer_size"
	jsonPgSizes         = "pgsizes"
	jsonMaxDMAMaps      = "max_dma_maps"
	jsonMigration       = "migration"
	jsonMigPgSize       = "pgsize"
	jsonMigMaxBitmap    = "max_bitmap_size"
	jsonTwinSocket      = "twin_socket"
	jsonTwinSupported   = "supported"
	jsonTwinFDIndex     = "fd_index"
	jsonWriteMultiple   = "write_multiple"
)

// Capabilities is the "capabilities" object of VERSION. A nil pointer means
// the member is absent, and the receiver applies the default (Default*
// constants; note QEMU assumes max_msg_fds 8 where the spec says 1). Values
// are not range-checked here: QEMU's limits (max_msg_fds <= 16,
// max_data_xfer_size <= 64 MiB, ...) are the negotiating layer's business.
//
// Decoding ignores unknown members and refuses a known member of the wrong
// JSON type (a string, a fraction, a negative or out-of-range number, null).
// Encoding writes the members in the order QEMU's client does, omitting
// absent ones, zero migration members and false booleans.
type Capabilities struct {
	MaxMsgFDs       *uint64         // max_msg_fds: fds the sender can receive in one message
	MaxDataXferSize *uint64         // max_data_xfer_size: largest data count the sender accepts
	PgSizes         *uint64         // pgsizes: OR of supported DMA page sizes
	MaxDMAMaps      *uint64         // max_dma_maps: simultaneous DMA mappings
	Migration       *MigrationCaps  // migration
	TwinSocket      *TwinSocketCaps // twin_socket (QEMU 10.1 does not offer it)
	WriteMultiple   bool            // write_multiple: REGION_WRITE_MULTI is accepted
}

// MigrationCaps is the "migration" capability object. 0 means absent.
type MigrationCaps struct {
	PgSize        uint64 // pgsize: dirty bitmap page size
	MaxBitmapSize uint64 // max_bitmap_size
}

// TwinSocketCaps is the "twin_socket" capability object.
type TwinSocketCaps struct {
	Supported bool    // supported
	FDIndex   *uint64 // fd_index: reply only; which passed fd is the server-to-client socket
}

// appendJSON appends {"capabilities":{...}} without the NUL.
func (c *Capabilities) appendJSON(b []byte) []byte {
	b = append(b, `{"`+jsonCapabilities+`":{`...)
	first := true
	sep := func() {
		if !first {
			b = append(b, ',')
		}
		first = false
	}
	num := func(name string, v *uint64) {
		if v != nil {
			sep()
			b = append(b, `"`+name+`":`...)
			b = strconv.AppendUint(b, *v, 10)
		}
	}
	num(jsonMaxMsgFDs, c.MaxMsgFDs)
	num(jsonMaxDataXferSize, c.MaxDataXferSize)
	num(jsonPgSizes, c.PgSizes)
	num(jsonMaxDMAMaps, c.MaxDMAMaps)
	if m := c.Migration; m != nil {
		sep()
		b = append(b, `"`+jsonMigration+`":{`...)
		first = true
		if m.PgSize != 0 {
			num(jsonMigPgSize, &m.PgSize)
		}
		if m.MaxBitmapSize != 0 {
			num(jsonMigMaxBitmap, &m.MaxBitmapSize)
		}
		b = append(b, '}')
		first = false
	}
	if t := c.TwinSocket; t != nil {
		sep()
		b = append(b, `"`+jsonTwinSocket+`":{`...)
		first = true
		if t.Supported {
			sep()
			b = append(b, `"`+jsonTwinSupported+`":true`...)
		}
		num(jsonTwinFDIndex, t.FDIndex)
		b = append(b, '}')
		first = false
	}
	if c.WriteMultiple {
		sep()
		b = append(b, `"`+jsonWriteMultiple+`":true`...)
	}
	return append(b, "}}"...)
}

// decodeVersionJSON parses the VERSION JSON text (without its NUL).
func decodeVersionJSON(text []byte) (*Capabilities, error) {
	top, err := jsonObject(text, "version data")
	if err != nil {
		return nil, err
	}
	raw, ok := top[jsonCapabilities]
	if !ok {
		return nil, nil
	}
	obj, err := jsonObject(raw, jsonCapabilities)
	if err != nil {
		return nil, err
	}
	c := &Capabilities{}
	for _, f := range []struct {
		name string
		dst  **uint64
	}{
		{jsonMaxMsgFDs, &c.MaxMsgFDs},
		{jsonMaxDataXferSize, &c.MaxDataXferSize},
		{jsonPgSizes, &c.PgSizes},
		{jsonMaxDMAMaps, &c.MaxDMAMaps},
	} {
		if raw, ok := obj[f.name]; ok {
			v, err := jsonUint(raw, jsonCapabilities+"."+f.name)
			if err != nil {
				return nil, err
			}
			*f.dst = &v
		}
	}
	if raw, ok := obj[jsonMigration]; ok {
		const path = jsonCapabilities + "." + jsonMigration
		m, err := jsonObject(raw, path)
		if err != nil {
			return nil, err
		}
		c.Migration = &MigrationCaps{}
		if raw, ok := m[jsonMigPgSize]; ok {
			if c.Migration.PgSize, err = jsonUint(raw, path+"."+jsonMigPgSize); err != nil {
				return nil, err
			}
		}
		if raw, ok := m[jsonMigMaxBitmap]; ok {
			if c.Migration.MaxBitmapSize, err = jsonUint(raw, path+"."+jsonMigMaxBitmap); err != nil {
				return nil, err
			}
		}
	}
	if raw, ok := obj[jsonTwinSocket]; ok {
		const path = jsonCapabilities + "." + jsonTwinSocket
		t, err := jsonObject(raw, path)
		if err != nil {
			return nil, err
		}
		c.TwinSocket = &TwinSocketCaps{}
		if raw, ok := t[jsonTwinSupported]; ok {
			if c.TwinSocket.Supported, err = jsonBool(raw, path+"."+jsonTwinSupported); err != nil {
				return nil, err
			}
		}
		if raw, ok := t[jsonTwinFDIndex]; ok {
			v, err := jsonUint(raw, path+"."+jsonTwinFDIndex)
			if err != nil {
				return nil, err
			}
			c.TwinSocket.FDIndex = &v
		}
	}
	if raw, ok := obj[jsonWriteMultiple]; ok {
		if c.WriteMultiple, err = jsonBool(raw, jsonCapabilities+"."+jsonWriteMultiple); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// jsonObject parses raw as a JSON object, keeping member values raw. Member
// names match exactly (encoding/json's struct decoding would fold case);
// for a repeated name the last value wins.
func jsonObject(raw []byte, path string) (map[string]json.RawMessage, error) {
	if jsonKind(raw) != '{' {
		return nil, malformed(CmdVersion, path, "want a JSON object, got %s", describeJSON(raw))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, malformed(CmdVersion, path, "invalid JSON: %v", err)
	}
	return m, nil
}

// jsonUint parses raw as a JSON integer in [0, 2^64).
func jsonUint(raw []byte, path string) (uint64, error) {
	k := jsonKind(raw)
	if k != '-' && (k < '0' || k > '9') {
		return 0, malformed(CmdVersion, path, "want a non-negative integer, got %s", describeJSON(raw))
	}
	var v uint64
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, malformed(CmdVersion, path, "want a non-negative integer that fits 64 bits, got %s", describeJSON(raw))
	}
	return v, nil
}

// jsonBool parses raw as true or false.
func jsonBool(raw []byte, path string) (bool, error) {
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, malformed(CmdVersion, path, "want true or false, got %s", describeJSON(raw))
}

// jsonKind returns the first non-space byte of a JSON value, or 0.
func jsonKind(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// describeJSON names the kind of a JSON value for an error message, with a
// short excerpt.
func describeJSON(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	kind := "nothing"
	if len(raw) > 0 {
		switch c := raw[0]; {
		case c == '{':
			kind = "an object"
		case c == '[':
			kind = "an array"
		case c == '"':
			kind = "a string"
		case c == 't' || c == 'f':
			kind = "a boolean"
		case c == 'n':
			kind = "null"
		case c == '-' || (c >= '0' && c <= '9'):
			kind = "a number"
		default:
			kind = "invalid JSON"
		}
	}
	const excerpt = 32
	if len(raw) > excerpt {
		return kind + " (" + strconv.Quote(string(raw[:excerpt])) + "...)"
	}
	return kind + " (" + strconv.Quote(string(raw)) + ")"
}
