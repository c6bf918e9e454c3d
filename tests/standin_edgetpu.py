"""A stand-in libedgetpu.so.1 whose Edge TPU can be unplugged and plugged back in by the test.

It does what libedgetpu's delegate does with the runtime (google-coral/libedgetpu at e35aed1):
`tflite_plugin_create_delegate` opens the device and returns no delegate when there is none
(tflite/edgetpu_delegate_for_custom_op_tflite_plugin.cc); the delegate's Prepare hands each
`edgetpu-custom-op` node to a delegate kernel, one node at a time (tflite/edgetpu_delegate_for_custom_op.cc);
once the device is gone, a USB Coral's driver aborts the process (driver/usb/usb_driver.cc, HandleEvent's
LOG(FATAL)) and a PCIe one's invoke fails with "Failed to execute request." (tflite/custom_op_direct.cc,
CustomOpInvoke), and a delegate whose device went away stays failed: only a
new delegate opens the device again, and only once every delegate on the dead driver is destroyed: while one
is alive, a new delegate is handed that same driver, dead or not, as libedgetpu's manager does with an open
device of the type asked for (tflite/edgetpu_manager_direct.cc, OpenDeviceInternal and TryMatchDriverWrapper;
ReleaseEdgeTpuContext closes it with its last user). It does not tell device types apart (the bus is fixed when it is
built, where TryMatchDriverWrapper matches the type asked for), nor lock its shared driver as the manager's mutex
does: the tests open one Coral from one thread. What it cannot do is run the compiled model: its
"Edge TPU" answers every frame with one class, chosen when it is built, at full score.

The device is "unplugged" while the file named by EDGETPU_STANDIN_UNPLUGGED exists. With EDGETPU_STANDIN_LOG,
it appends "opened", "shared" and "closed" there as the driver is opened, handed out again and closed.
The structs mirror tflite/core/c/common.h of google-ai-edge/LiteRT (the runtime's own ABI; only the
fields used here and what precedes them are spelled out; the registration passed by value is padded
with zeros, so fields a newer runtime adds read as zero).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <unistd.h>
#include <time.h>

typedef struct { int size; int data[]; } IntArray;
typedef struct { float scale; int32_t zero_point; } QuantParams;
typedef struct {
    int type; void *data; IntArray *dims; QuantParams params; int allocation_type; size_t bytes;
    const void *allocation; const char *name; void *delegate; int buffer_handle; bool stale, variable;
    struct { int type; void *params; } quantization; void *sparsity; const IntArray *dims_signature;
} Tensor;
typedef struct {
    IntArray *inputs, *outputs, *intermediates, *temporaries;
    void *user_data, *builtin_data; const void *custom_data; int custom_data_size; void *delegate;
} Node;
struct Registration;
struct Delegate;
typedef struct Context {
    size_t tensors_size;
    int (*GetExecutionPlan)(struct Context *, IntArray **);
    Tensor *tensors;
    void *impl;
    void *ResizeTensor;
    void (*ReportError)(struct Context *, const char *, ...);
    void *AddTensors;
    int (*GetNodeAndRegistration)(struct Context *, int, Node **, struct Registration **);
    int (*ReplaceNodeSubsetsWithDelegateKernels)(struct Context *, struct Registration, const IntArray *,
                                                 struct Delegate *);
} Context;
typedef struct Registration {
    void *(*init)(Context *, const char *, size_t);
    void (*free)(Context *, void *);
    int (*prepare)(Context *, Node *);
    int (*invoke)(Context *, Node *);
    void *profiling_string;
    int32_t builtin_code;
    const char *custom_name;
    int version;
    void *external, *async_kernel;
    uint64_t inplace_operator;
    char reserved[64];
} Registration;
typedef struct { int alive, users; } Driver;  /* alive: 1 while the device answers, 0 once it went away */
static Driver *opened;  /* the open driver, shared by every delegate until the last is destroyed */
typedef struct Delegate {
    Driver *data;
    int (*prepare)(Context *, struct Delegate *);
    void *copy_from, *copy_to, *free_handle;
    int64_t flags;
    void *opaque_builder;
} Delegate;

static bool unplugged(void) {
    const char *flag = getenv("EDGETPU_STANDIN_UNPLUGGED");
    return flag && access(flag, F_OK) == 0;
}

static void note(const char *what) {
    const char *log = getenv("EDGETPU_STANDIN_LOG");
    FILE *file = log ? fopen(log, "a") : 0;
    if (file) { fprintf(file, "%s\n", what); fclose(file); }
}

static int kernel_invoke(Context *context, Node *node) {
    Driver *driver = ((Delegate *)node->delegate)->data;
    if (unplugged()) driver->alive = 0;
    if (!driver->alive && ABORTS_ON_UNPLUG) {
        /* A USB Coral: the driver's event handler gets a USB error that is neither a timeout nor a cancel and
           calls LOG(FATAL) (driver/usb/usb_driver.cc, UsbDriver::HandleEvent: "%s failed. %s"): glog writes
           the line and aborts the process. */
        time_t now = time(0);
        struct tm *at = localtime(&now);
        fprintf(stderr, "F%02d%02d %02d:%02d:%02d.000000 %6d usb_driver.cc:406] HandleEvent failed. "
                "Failed precondition: LIBUSB_ERROR_NO_DEVICE\n*** Check failure stack trace: ***\n",
                at->tm_mon + 1, at->tm_mday, at->tm_hour, at->tm_min, at->tm_sec, (int)getpid());
        fflush(stderr);
        abort();
    }
    if (!driver->alive) {
        context->ReportError(context, "Failed to execute request. Device not found.");
        return 1;
    }
    Tensor *scores = &context->tensors[node->outputs->data[0]];
    memset(scores->data, 0, scores->bytes);
    ((uint8_t *)scores->data)[ANSWER] = 255;
    return 0;
}

static int prepare(Context *context, Delegate *delegate) {
    IntArray *plan;
    if (context->GetExecutionPlan(context, &plan)) return 1;
    int count = plan->size, claimed[count], n = 0;
    for (int i = 0; i < count; i++) {
        Node *node; Registration *registration;
        if (context->GetNodeAndRegistration(context, plan->data[i], &node, &registration)) return 1;
        if (registration->custom_name && strcmp(registration->custom_name, "edgetpu-custom-op") == 0)
            claimed[n++] = plan->data[i];
    }
    Registration kernel = {0};
    kernel.invoke = kernel_invoke;
    kernel.custom_name = "EdgeTpuDelegateForCustomOp";
    kernel.version = 1;
    IntArray *nodes = malloc(sizeof *nodes + sizeof(int));
    nodes->size = 1;
    for (int i = 0; i < n; i++) {
        nodes->data[0] = claimed[i];
        context->ReplaceNodeSubsetsWithDelegateKernels(context, kernel, nodes, delegate);
    }
    free(nodes);
    return 0;
}

void *tflite_plugin_create_delegate(char **keys, char **values, unsigned long n, void (*report)(const char *)) {
    if (opened) {  /* already open: handed out again before any device is looked for */
        opened->users++;
        note("shared");
    } else {
        if (unplugged()) return 0;
        opened = calloc(1, sizeof *opened);
        opened->alive = 1;
        opened->users = 1;
        note("opened");
    }
    Delegate *delegate = calloc(1, sizeof *delegate);
    delegate->data = opened;
    delegate->prepare = prepare;
    delegate->flags = 1;  /* kTfLiteDelegateFlagsAllowDynamicTensors, as libedgetpu sets */
    return delegate;
}

void tflite_plugin_destroy_delegate(void *delegate) {
    /* LiteRT's Delegate.__del__ calls this even for the null delegate of a failed create; libedgetpu's
       FreeEdgeTpuDelegateForCustomOp deletes it, a no-op for null (tflite/edgetpu_delegate_for_custom_op.cc). */
    if (!delegate) return;
    Driver *driver = ((Delegate *)delegate)->data;
    if (--driver->users == 0) {
        free(driver);
        opened = 0;
        note("closed");
    }
    free(delegate);
}
"""


def build_standin_edgetpu(directory: Path, answer: int, bus: str = "usb") -> dict[str, str]:
    """Builds the stand-in libedgetpu.so.1 in `directory`; its Edge TPU answers class `answer`. On the "usb" bus
    an unplugged Coral aborts the process, as libedgetpu's USB driver does; on "pci" its invokes fail.
    Returns the environment that loads it and names the unplug flag (`directory / "unplugged"`) and its log
    (`directory / "driver.log"`)."""
    source = directory / "standin_edgetpu.c"
    source.write_text(SOURCE.replace("ANSWER", str(answer)).replace("ABORTS_ON_UNPLUG", str(int(bus == "usb"))))
    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler, "a C compiler is needed to build the stand-in libedgetpu"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(directory / "libedgetpu.so.1"), str(source)],
                   check=True)
    return {"LD_LIBRARY_PATH": str(directory), "EDGETPU_STANDIN_UNPLUGGED": str(directory / "unplugged"),
            "EDGETPU_STANDIN_LOG": str(directory / "driver.log")}
