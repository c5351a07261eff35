/* tests/comm/launch_main.c — `pipetrain launch` as a stand-alone program for the tests (the same
 * source, src/cli/cmd_launch.c, without the rest of the pipetrain program). */
#include "cli.h"

int main(int argc, char **argv) { return pt_cmd_launch(argc, argv); }
