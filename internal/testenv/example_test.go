package testenv_test

import (
	"fmt"
	"os"

	"github.com/ycq-dev/ycq/internal/testenv"
)

// A run that must not skip the VFIO and QEMU tests says so in YCQ_REQUIRE.
func ExampleRequired() {
	os.Setenv(testenv.RequireEnv, "vfio,qemu")
	defer os.Unsetenv(testenv.RequireEnv)
	fmt.Println(testenv.Required("vfio"), testenv.Required("qemu"), testenv.Required("root"))
	// Output: true true false
}
