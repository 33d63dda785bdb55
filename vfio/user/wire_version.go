package user

import "github.com/ycq-dev/ycq/internal/wirebuf"

// VERSION (1): request and reply have the same layout. The JSON
// capabilities it carries are modelled in capabilities.go.

const (
	sizeofVersion   = 4 // fixed part
	offVersionMajor = 0 // u16 major
	offVersionMinor = 2 // u16 minor
	offVersionData  = 4 // optional UTF-8 JSON, terminated by a NUL
)

// Version is the VERSION request and reply (struct vfio_user_version).
// QEMU sends major 0, minor 0. A reply keeps the major and a minor no larger
// than the client's.
type Version struct {
	Major uint16
	Minor uint16
	// Caps is the "capabilities" object of the JSON data. nil means the
	// message has no JSON or the JSON has no "capabilities" member; Encode
	// then sends no JSON at all.
	Caps *Capabilities
}

// Encode appends the VERSION payload: major, minor and, if Caps is set,
// {"capabilities":{...}} followed by a NUL.
func (v Version) Encode(b []byte) []byte {
	b, s := wirebuf.Grow(b, sizeofVersion)
	le.PutUint16(s[offVersionMajor:], v.Major)
	le.PutUint16(s[offVersionMinor:], v.Minor)
	if v.Caps != nil {
		b = v.Caps.appendJSON(b)
		b = append(b, 0)
	}
	return b
}

// DecodeVersion decodes a VERSION request or reply. JSON data, when present,
// must end in a NUL and be a JSON object; unknown keys are ignored, known
// keys with the wrong JSON type are refused (see Capabilities).
func DecodeVersion(p []byte) (Version, error) {
	if len(p) < sizeofVersion {
		return Version{}, malformed(CmdVersion, "version", "%d bytes, need %d for major and minor", len(p), sizeofVersion)
	}
	v := Version{Major: le.Uint16(p[offVersionMajor:]), Minor: le.Uint16(p[offVersionMinor:])}
	data := p[offVersionData:]
	if len(data) == 0 {
		return v, nil
	}
	if data[len(data)-1] != 0 {
		return Version{}, malformed(CmdVersion, "version data", "JSON is not NUL-terminated")
	}
	caps, err := decodeVersionJSON(data[:len(data)-1])
	if err != nil {
		return Version{}, err
	}
	v.Caps = caps
	return v, nil
}
