/* Hostile and broken data.pkl: code-running globals (os.system, builtins.eval, also through
 * STACK_GLOBAL), deep nesting, stack and memo abuse, opcodes outside the subset, non-contiguous
 * strides, views past their storage, storages past their zip entry, huge sizes (refused without
 * allocating them), truncation at every byte. Each is refused with a message naming the file. */
#include "test_malformed_build.h"

/* A .pth holding the pickle and one 64-byte storage "0". */
static void expect_pickle_refused(const char *what, const mbuf *pickle, baton_status status,
                                  const char *want) {
    static const char *const keys[] = {"0"};
    static const size_t sizes[] = {64};
    mbuf b = mpth_build(pickle, keys, sizes, 1);
    size_t before = (size_t)check_failures;
    expect_refused_at(__FILE__, __LINE__, b.bytes, b.len, "m.pth", status, want);
    if ((size_t)check_failures != before) fprintf(stderr, "  in case: %s\n", what);
    free(b.bytes);
}

static mbuf raw(const char *bytes, size_t n) {
    mbuf b = {0};
    mb_put(&b, bytes, n);
    return b;
}
#define RAW(s) raw(s, sizeof(s) - 1)

static void expect_raw_refused(const char *what, mbuf b, baton_status status, const char *want) {
    expect_pickle_refused(what, &b, status, want);
    free(b.bytes);
}

/* A dict with one tensor, as mpk_dict writes it, with t changed by the caller. */
static void expect_tensor_refused(const char *what, mpk_tensor t, baton_status status, const char *want) {
    mbuf p = mpk_dict(&t, 1);
    expect_pickle_refused(what, &p, status, want);
    free(p.bytes);
}

int main(void) {
    /* The well-formed reference: a 4x4 fp32 view over the 64-byte storage. */
    mpk_tensor good = mpk_matrix("w", "0", 4, 4);
    {
        static const char *const keys[] = {"0"};
        static const size_t sizes[] = {64};
        mbuf p = mpk_dict(&good, 1);
        mbuf b = mpth_build(&p, keys, sizes, 1);
        CHECK(try_bytes(b.bytes, b.len, "m.pth") == BATON_OK);
        expect_truncations_refused(&b, "m.pth");
        /* Truncating the pickle itself (inside an intact zip) at every byte. */
        for (size_t n = 0; n + 1 < p.len; n++) {
            mbuf cut = raw((const char *)p.bytes, n);
            mbuf z = mpth_build(&cut, keys, sizes, 1);
            expect_refused_at(__FILE__, __LINE__, z.bytes, z.len, "m.pth", ANY_STATUS, "data.pkl");
            free(cut.bytes);
            free(z.bytes);
        }
        free(p.bytes);
        free(b.bytes);
    }

    /* Globals that would run code. */
    expect_raw_refused("os.system", RAW("\x80\x02" "cos\nsystem\n" "X\x02\0\0\0ls" "\x85R."),
                       BATON_ERR_UNSUPPORTED, "GLOBAL os.system is not allowed");
    expect_raw_refused("builtins.eval", RAW("\x80\x02" "cbuiltins\neval\n" "X\x01\0\0\0" "1" "\x85R."),
                       BATON_ERR_UNSUPPORTED, "GLOBAL builtins.eval is not allowed");
    expect_raw_refused("posix.system", RAW("cposix\nsystem\n."), BATON_ERR_UNSUPPORTED, "posix.system");
    expect_raw_refused("stack global", RAW("\x80\x04\x8c\x02os\x8c\x06system\x93."),
                       BATON_ERR_UNSUPPORTED, "GLOBAL os.system is not allowed");
    expect_raw_refused("unprintable global", RAW("c\x1b[31m\nx\n."), BATON_ERR_UNSUPPORTED, "?[31m.x");
    expect_raw_refused("unterminated global", RAW("ctorch\nFloatStorage"), BATON_ERR_FORMAT, "GLOBAL");
    expect_raw_refused("reduce on a storage", RAW("ctorch\nFloatStorage\n)R."), BATON_ERR_UNSUPPORTED,
                       "storage class");
    expect_raw_refused("OrderedDict with arguments", RAW("ccollections\nOrderedDict\nK\x01\x85R."),
                       BATON_ERR_UNSUPPORTED, "OrderedDict");
    expect_raw_refused("reduce on a string", RAW("X\x01\0\0\0a)R."), BATON_ERR_FORMAT, "REDUCE");

    /* Opcodes outside the subset, protocols outside 2..5. */
    expect_raw_refused("INST", RAW("(ios\nsystem\n."), BATON_ERR_UNSUPPORTED, "opcode 0x69");
    expect_raw_refused("BUILD", RAW("}}b."), BATON_ERR_UNSUPPORTED, "opcode 0x62");
    expect_raw_refused("NEWOBJ", RAW("ccollections\nOrderedDict\n)\x81."), BATON_ERR_UNSUPPORTED, "opcode 0x81");
    expect_raw_refused("BINFLOAT", RAW("G\0\0\0\0\0\0\0\0."), BATON_ERR_UNSUPPORTED, "opcode 0x47");
    expect_raw_refused("protocol 6", RAW("\x80\x06}."), BATON_ERR_UNSUPPORTED, "protocol");
    expect_raw_refused("protocol 1", RAW("\x80\x01}."), BATON_ERR_UNSUPPORTED, "protocol");
    expect_raw_refused("frame past the end", RAW("\x80\x04\x95\xff\xff\0\0\0\0\0\0}."), BATON_ERR_FORMAT, "frame");

    /* Stack, marks and memo. */
    expect_raw_refused("underflow", RAW("K\x01\x86."), BATON_ERR_FORMAT, "underflow");
    expect_raw_refused("underflow below a mark", RAW("K\x01(K\x02\x86."), BATON_ERR_FORMAT, "underflow");
    expect_raw_refused("tuple without mark", RAW("K\x01t."), BATON_ERR_FORMAT, "MARK");
    expect_raw_refused("odd setitems", RAW("}(K\x01u."), BATON_ERR_FORMAT, "odd");
    expect_raw_refused("setitems on a list", RAW("](K\x01K\x02u."), BATON_ERR_FORMAT, "dict");
    expect_raw_refused("append to a dict", RAW("}K\x01" "a."), BATON_ERR_FORMAT, "list");
    expect_raw_refused("stop with two values", RAW("}}."), BATON_ERR_FORMAT, "unbalanced");
    expect_raw_refused("stop on empty stack", RAW("."), BATON_ERR_FORMAT, "unbalanced");
    expect_raw_refused("no stop", RAW("}"), BATON_ERR_FORMAT, "STOP");
    expect_raw_refused("empty", RAW(""), BATON_ERR_FORMAT, "STOP");
    expect_raw_refused("memo index 2^32-1", RAW("}r\xff\xff\xff\xff."), BATON_ERR_UNSUPPORTED, "memo");
    expect_raw_refused("memo never stored", RAW("h\x05."), BATON_ERR_FORMAT, "memo");
    expect_raw_refused("memo on empty stack", RAW("q\x00}."), BATON_ERR_FORMAT, "underflow");
    expect_raw_refused("string past the end", RAW("X\xff\xff\xff\x7f" "abc."), BATON_ERR_FORMAT, "string");
    expect_raw_refused("long of 9 bytes", RAW("\x8a\x09\0\0\0\0\0\0\0\0\0."), BATON_ERR_UNSUPPORTED, "64 bits");
    {
        mbuf b = {0};
        for (int i = 0; i < 70; i++) mb_u8(&b, '(');
        mb_u8(&b, '.');
        expect_raw_refused("70 marks", b, BATON_ERR_FORMAT, "MARK");
    }
    {
        mbuf b = {0};
        mb_u8(&b, ')');
        for (int i = 0; i < 100; i++) mb_u8(&b, 0x85); /* ((((),),),)... */
        mb_u8(&b, '.');
        expect_raw_refused("tuples 100 deep", b, BATON_ERR_FORMAT, "deep");
    }
    {
        mbuf b = {0};
        mb_put(&b, "]q\x00", 3); /* a list, memo 0 */
        for (int i = 0; i < 100; i++) mb_put(&b, "h\x00h\x00" "a", 5); /* append it to itself */
        mb_u8(&b, '.');
        expect_raw_refused("a list inside itself", b, BATON_ERR_FORMAT, "deep");
    }
    {
        mbuf b = {0};
        for (int i = 0; i < 70000; i++) mb_u8(&b, 'N');
        mb_u8(&b, '.');
        expect_raw_refused("70000 values on the stack", b, BATON_ERR_FORMAT, "stack overflow");
    }

    /* The dict and its tensors. */
    expect_raw_refused("root is a list", RAW("]."), BATON_ERR_FORMAT, "dict of tensors");
    expect_raw_refused("value is an int", RAW("}X\x01\0\0\0wK\x01s."), BATON_ERR_FORMAT, "w: not a tensor");
    expect_raw_refused("key is an int", RAW("}K\x01K\x01s."), BATON_ERR_FORMAT, "not a tensor name");
    expect_raw_refused("persistent id not a storage", RAW("X\x01\0\0\0" "a" "\x85Q."), BATON_ERR_FORMAT,
                       "5-tuple");
    expect_raw_refused("persistent id of a module",
                       RAW("(X\x06\0\0\0module" "cos\nsystem\n" "NNNtQ."), BATON_ERR_UNSUPPORTED,
                       "os.system");
    expect_raw_refused("persistent id with a bad tag",
                       RAW("(X\x03\0\0\0" "bad" "ctorch\nFloatStorage\n" "X\x01\0\0\0" "0" "X\x03\0\0\0" "cpu" "K\x01tQ."),
                       BATON_ERR_UNSUPPORTED, "not a storage");
    expect_raw_refused("persistent id with a negative numel",
                       RAW("(X\x07\0\0\0storage" "ctorch\nFloatStorage\n" "X\x01\0\0\0" "0" "X\x03\0\0\0" "cpu" "J\xff\xff\xff\xfftQ."),
                       BATON_ERR_FORMAT, "numel");

    mpk_tensor t = good;
    t.stride[0] = 1, t.stride[1] = 4;
    expect_tensor_refused("transposed strides", t, BATON_ERR_UNSUPPORTED, "w: strides (1, 4) are not contiguous");
    t = good;
    t.stride[0] = 8;
    expect_tensor_refused("row stride 8", t, BATON_ERR_UNSUPPORTED, "not contiguous");
    t = good;
    t.ndim = 3, t.shape[2] = 1, t.stride[2] = 99; /* a size-1 dim's stride does not matter */
    {
        static const char *const keys[] = {"0"};
        static const size_t sizes[] = {64};
        mbuf p = mpk_dict(&t, 1);
        mbuf b = mpth_build(&p, keys, sizes, 1);
        CHECK(try_bytes(b.bytes, b.len, "m.pth") == BATON_OK);
        free(p.bytes);
        free(b.bytes);
    }
    t = good;
    t.offset = 1;
    expect_tensor_refused("view past its storage", t, BATON_ERR_FORMAT, "outside its storage");
    t = good;
    t.numel = 17;
    expect_tensor_refused("storage larger than its entry", t, BATON_ERR_FORMAT, "holds 64 bytes");
    t = good;
    t.numel = (int64_t)1 << 62, t.shape[0] = (int64_t)1 << 30, t.shape[1] = (int64_t)1 << 30;
    t.stride[0] = (int64_t)1 << 30;
    expect_tensor_refused("2^62 elements", t, BATON_ERR_FORMAT, "holds 64 bytes");
    t = good;
    t.numel = INT64_MAX, t.shape[0] = INT64_MAX / 2, t.shape[1] = 3, t.stride[0] = 3;
    expect_tensor_refused("shape overflowing 64 bits", t, BATON_ERR_FORMAT, "bad shape");
    t = good;
    t.shape[0] = -4;
    expect_tensor_refused("negative dim", t, BATON_ERR_FORMAT, "bad shape");
    t = good;
    t.offset = -1;
    expect_tensor_refused("negative offset", t, BATON_ERR_FORMAT, "_rebuild_tensor_v2 needs");
    t = good;
    t.key = "1";
    expect_tensor_refused("storage not in the zip", t, BATON_ERR_FORMAT, "archive/data/1 is not in the zip");
    t = good;
    t.storage = "DoubleStorage";
    expect_tensor_refused("fp64 storage", t, BATON_ERR_UNSUPPORTED, "torch.DoubleStorage");
    t = good;
    t.ndim = 5;
    for (int d = 0; d < 5; d++) t.shape[d] = 1, t.stride[d] = 1;
    expect_tensor_refused("5 dims", t, BATON_ERR_UNSUPPORTED, "at most 4");
    t = good;
    char long_name[200];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    t.name = long_name;
    expect_tensor_refused("name of 199 bytes", t, BATON_ERR_FORMAT, "not a tensor name");
    {
        mpk_tensor two[2] = {good, good};
        mbuf p = mpk_dict(two, 2);
        expect_pickle_refused("a name twice", &p, BATON_ERR_FORMAT, "tensor w appears twice");
        free(p.bytes);
    }
    return test_result();
}
