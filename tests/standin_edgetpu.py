"""A stand-in libedgetpu.so.1 whose Edge TPU can be unplugged and plugged back in by the test.

It does what libedgetpu's delegate does with the runtime (google-coral/libedgetpu at e35aed1):
`tflite_plugin_create_delegate` opens the device and returns no delegate when there is none
(tflite/edgetpu_delegate_for_custom_op_tflite_plugin.cc); the delegate's Prepare hands each
`edgetpu-custom-op` node to a delegate kernel, one node at a time (tflite/edgetpu_delegate_for_custom_op.cc);
the kernel's invoke fails with "Failed to execute request." once the device is gone
(tflite/custom_op_direct.cc, CustomOpInvoke), and a delegate whose device went away stays failed: only a
new delegate opens the device again. What it cannot do is run the compiled model: its "Edge TPU" answers
every frame with one class, chosen when it is built, at full score.

The device is "unplugged" while the file named by EDGETPU_STANDIN_UNPLUGGED exists.
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
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <unistd.h>

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
typedef struct Delegate {
    void *data;  /* the "device": 1 while it answers, 0 once it went away */
    int (*prepare)(Context *, struct Delegate *);
    void *copy_from, *copy_to, *free_handle;
    int64_t flags;
    void *opaque_builder;
} Delegate;

static bool unplugged(void) {
    const char *flag = getenv("EDGETPU_STANDIN_UNPLUGGED");
    return flag && access(flag, F_OK) == 0;
}

static int kernel_invoke(Context *context, Node *node) {
    Delegate *delegate = node->delegate;
    if (unplugged()) delegate->data = 0;
    if (!delegate->data) {
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
    if (unplugged()) return 0;
    Delegate *delegate = calloc(1, sizeof *delegate);
    delegate->data = (void *)1;
    delegate->prepare = prepare;
    delegate->flags = 1;  /* kTfLiteDelegateFlagsAllowDynamicTensors, as libedgetpu sets */
    return delegate;
}

void tflite_plugin_destroy_delegate(void *delegate) { free(delegate); }
"""


def build_standin_edgetpu(directory: Path, answer: int) -> dict[str, str]:
    """Builds the stand-in libedgetpu.so.1 in `directory`; its Edge TPU answers class `answer`.
    Returns the environment that loads it and names the unplug flag (`directory / "unplugged"`)."""
    source = directory / "standin_edgetpu.c"
    source.write_text(SOURCE.replace("ANSWER", str(answer)))
    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler, "a C compiler is needed to build the stand-in libedgetpu"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(directory / "libedgetpu.so.1"), str(source)],
                   check=True)
    return {"LD_LIBRARY_PATH": str(directory), "EDGETPU_STANDIN_UNPLUGGED": str(directory / "unplugged")}
