#version 450
// dst = src, 16 bytes per invocation per iteration, grid-stride: the bench's yardstick for the
// device's memory bandwidth (on NVIDIA vkCmdCopyBuffer runs on the slower copy engine).
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Src { uvec4 src[]; };
layout(std430, binding = 1) writeonly buffer Dst { uvec4 dst[]; };

layout(push_constant) uniform Push {
    uint count;  // uvec4 elements
} pc;

void main() {
    uint stride = gl_NumWorkGroups.x * 256u;
    for (uint i = gl_GlobalInvocationID.x; i < pc.count; i += stride) dst[i] = src[i];
}
