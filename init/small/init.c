/* SPDX-License-Identifier: MIT
 *
 * The small profile's /init: the least a program can do and still prove the
 * chain worked. It prints the marker line and ends the VM. The small kernel
 * has no ACPI, so there is no power-off to ask for: it asks for a restart,
 * which `reboot=t` on the command line turns into a triple fault and QEMU's
 * -no-reboot into QEMU's exit. The kernel opens /dev/console (in the
 * initramfs) as fds 0-2 before starting it.
 */

#include <linux/reboot.h>

#ifndef TINYUKI_MARKER
#define TINYUKI_MARKER "tinyuki: init started"
#endif

static const char line[] = TINYUKI_MARKER "\n";

int main(void)
{
	write(1, line, sizeof(line) - 1);
	reboot(LINUX_REBOOT_CMD_RESTART);
	return 1; /* still here: the kernel panics, and panic=-1 restarts too */
}
