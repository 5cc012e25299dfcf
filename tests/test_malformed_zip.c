/* Broken zip archives are refused with a message naming the file: truncations at every byte,
 * entries past the end or overlapping, compression, encryption, duplicate names, bad ZIP64
 * records, huge counts (refused before any allocation), and every header byte flipped. */
#include "test_malformed_build.h"

#include "synth.h"

/* A well-formed .pth of one 2x2 fp32 tensor. */
static mbuf base_pth(mzip_layout *layout) {
    static mbuf pickle;
    static const unsigned char storage[16];
    mpk_tensor t = mpk_matrix("w", "0", 2, 2);
    pickle = mpk_dict(&t, 1);
    mzip_entry e[] = {{"archive/data.pkl", pickle.bytes, pickle.len}, {"archive/data/0", storage, 16}};
    return mzip_build(e, 2, layout);
}

static mbuf copy_of(const mbuf *b) {
    mbuf c = {0};
    mb_put(&c, b->bytes, b->len);
    return c;
}

/* Adds a ZIP64 end record and locator before the classic end record. */
static mbuf with_zip64(const mbuf *b, const mzip_layout *l, uint64_t count, uint64_t cd_size,
                       uint64_t cd_offset, uint64_t locator_target_delta) {
    mbuf z = {0};
    mb_put(&z, b->bytes, l->eocd);
    size_t rec = z.len;
    mb_le(&z, 0x06064b50, 4);
    mb_le(&z, 44, 8);
    mb_le(&z, 45, 2);
    mb_le(&z, 45, 2);
    mb_le(&z, 0, 4);
    mb_le(&z, 0, 4);
    mb_le(&z, count, 8);
    mb_le(&z, count, 8);
    mb_le(&z, cd_size, 8);
    mb_le(&z, cd_offset, 8);
    mb_le(&z, 0x07064b50, 4);
    mb_le(&z, 0, 4);
    mb_le(&z, rec + locator_target_delta, 8);
    mb_le(&z, 1, 4);
    mb_put(&z, b->bytes + l->eocd, b->len - l->eocd);
    size_t eocd = z.len - 22;
    mb_set_le(&z, eocd + EOCD_COUNT_DISK, 0xffff, 2);
    mb_set_le(&z, eocd + EOCD_COUNT, 0xffff, 2);
    mb_set_le(&z, eocd + EOCD_CD_SIZE, 0xffffffff, 4);
    mb_set_le(&z, eocd + EOCD_CD_OFFSET, 0xffffffff, 4);
    return z;
}

int main(void) {
    mzip_layout l;
    mbuf base = base_pth(&l);
    CHECK(try_bytes(base.bytes, base.len, "m.pth") == BATON_OK);
    expect_truncations_refused(&base, "m.pth");
    uint64_t cd_size = l.eocd - l.cd_offset;

    /* The same archive through ZIP64 end records reads the same; broken ones are refused. */
    mbuf z = with_zip64(&base, &l, 2, cd_size, l.cd_offset, 0);
    CHECK(try_bytes(z.bytes, z.len, "m.pth") == BATON_OK);
    expect_truncations_refused(&z, "m.pth");
    free(z.bytes);
    z = with_zip64(&base, &l, 2, cd_size, l.cd_offset, 1000000);
    EXPECT_REFUSED(&z, "m.pth", BATON_ERR_FORMAT, "ZIP64 end record offset");
    free(z.bytes);
    z = with_zip64(&base, &l, (uint64_t)1 << 40, cd_size, l.cd_offset, 0);
    EXPECT_REFUSED(&z, "m.pth", ANY_STATUS, "entries"); /* not 2^40 entries allocated */
    free(z.bytes);
    z = with_zip64(&base, &l, 1000, cd_size, l.cd_offset, 0);
    EXPECT_REFUSED(&z, "m.pth", BATON_ERR_FORMAT, "cannot fit");
    free(z.bytes);
    z = with_zip64(&base, &l, 2, (uint64_t)1 << 62, l.cd_offset, 0);
    EXPECT_REFUSED(&z, "m.pth", BATON_ERR_FORMAT, "central directory");
    free(z.bytes);
    z = with_zip64(&base, &l, 2, cd_size, UINT64_MAX - 10, 0);
    EXPECT_REFUSED(&z, "m.pth", BATON_ERR_FORMAT, "central directory");
    free(z.bytes);

    struct {
        size_t at;
        uint64_t value;
        int bytes;
        baton_status status;
        const char *want;
    } cases[] = {
        {l.central[1] + CDH_LOCAL, base.len + 100, 4, BATON_ERR_FORMAT, "no local header"},
        {l.central[1] + CDH_COMP, 0x7fffffff, 4, BATON_ERR_FORMAT, "compressed bytes"},
        {l.central[1] + CDH_COMP, 0x7fffffff, 8, BATON_ERR_FORMAT, "runs past"},
        {l.central[1] + CDH_LOCAL, l.local[0], 4, BATON_ERR_FORMAT, "disagrees"},
        {l.central[0] + CDH_METHOD, 8, 2, BATON_ERR_UNSUPPORTED, "compressed (method 8)"},
        {l.central[0] + CDH_FLAGS, 1, 2, BATON_ERR_UNSUPPORTED, "encrypted"},
        {l.central[1] + CDH_DISK, 1, 2, BATON_ERR_UNSUPPORTED, "another disk"},
        {l.central[1] + CDH_COMP, 0xffffffff, 8, BATON_ERR_FORMAT, "ZIP64 sizes"},
        {l.central[1] + CDH_NAME_LEN, 0xffff, 2, BATON_ERR_FORMAT, "runs past the directory"},
        {l.central[1] + CDH_NAME_LEN, 0, 2, BATON_ERR_FORMAT, "bad name"},
        {l.central[1] + CDH_NAME + 3, 0, 1, BATON_ERR_FORMAT, "bad name"},
        {l.central[1], 0x12345678, 4, BATON_ERR_FORMAT, "bad central directory header"},
        {l.local[1], 0x12345678, 4, BATON_ERR_FORMAT, "no local header"},
        {l.local[1] + 8, 8, 2, BATON_ERR_FORMAT, "disagrees"},
        {l.local[1] + 28, 0xffff, 2, BATON_ERR_FORMAT, "runs past the central directory"},
        {l.eocd + EOCD_COUNT, 0xffff, 2, BATON_ERR_FORMAT, "ZIP64"},
        {l.eocd + EOCD_COUNT, 3, 2, BATON_ERR_UNSUPPORTED, "multi-disk"},
        {l.eocd + EOCD_COUNT_DISK, 0x00030003, 4, BATON_ERR_FORMAT, "cannot fit"},
        {l.eocd + 4, 1, 2, BATON_ERR_UNSUPPORTED, "multi-disk"},
        {l.eocd + EOCD_CD_SIZE, 0xfffffff0, 4, BATON_ERR_FORMAT, "central directory"},
        {l.eocd + EOCD_CD_OFFSET, l.cd_offset + 1, 4, BATON_ERR_FORMAT, "central directory"},
        {l.eocd + 20, 1, 2, BATON_ERR_FORMAT, "no end of central directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mbuf c = copy_of(&base);
        mb_set_le(&c, cases[i].at, cases[i].value, cases[i].bytes);
        if (cases[i].bytes == 8) { /* both sizes */
            mb_set_le(&c, cases[i].at, cases[i].value, 4);
            mb_set_le(&c, cases[i].at + 4, cases[i].value, 4);
        }
        expect_refused_at(__FILE__, __LINE__ + 0 * (int)i, c.bytes, c.len, "m.pth", cases[i].status,
                          cases[i].want);
        free(c.bytes);
    }

    /* Entry B lies inside entry A's data: overlapping entries are refused. */
    {
        mbuf inner = {0};
        static const unsigned char sixteen[16];
        mpk_tensor t = mpk_matrix("w", "0", 2, 2);
        mbuf pickle = mpk_dict(&t, 1);
        mzip_entry one[] = {{"archive/data/0", sixteen, 16}};
        mzip_layout li;
        mbuf b = mzip_build(one, 1, &li);
        mb_put(&inner, b.bytes, li.cd_offset); /* B's local header and data */
        mzip_entry e[] = {{"archive/data.pkl", pickle.bytes, pickle.len}, {"archive/blob", inner.bytes, inner.len}};
        mzip_layout lo;
        mbuf outer = mzip_build(e, 2, &lo);
        /* Add a third central entry: archive/data/0 at B's local header inside archive/blob. */
        mbuf o = {0};
        mb_put(&o, outer.bytes, lo.eocd);
        size_t b_local = lo.local[1] + 30 + strlen("archive/blob");
        mb_put(&o, b.bytes + li.central[0], li.eocd - li.central[0]);
        mb_set_le(&o, lo.eocd + CDH_LOCAL, b_local, 4);
        mb_put(&o, outer.bytes + lo.eocd, 22);
        mb_set_le(&o, o.len - 22 + EOCD_COUNT_DISK, 3, 2);
        mb_set_le(&o, o.len - 22 + EOCD_COUNT, 3, 2);
        mb_set_le(&o, o.len - 22 + EOCD_CD_SIZE, o.len - 22 - lo.cd_offset, 4);
        EXPECT_REFUSED(&o, "m.pth", BATON_ERR_FORMAT, "overlap");
        free(inner.bytes);
        free(pickle.bytes);
        free(b.bytes);
        free(outer.bytes);
        free(o.bytes);
    }

    /* Duplicate names; no data.pkl; two of them. */
    {
        static const unsigned char sixteen[16];
        mpk_tensor t = mpk_matrix("w", "0", 2, 2);
        mbuf pickle = mpk_dict(&t, 1);
        mzip_entry dup[] = {{"archive/data.pkl", pickle.bytes, pickle.len},
                            {"archive/data/0", sixteen, 16},
                            {"archive/data/0", sixteen, 16}};
        mbuf b = mzip_build(dup, 3, NULL);
        EXPECT_REFUSED(&b, "m.pth", BATON_ERR_FORMAT, "appears twice");
        free(b.bytes);
        mzip_entry none[] = {{"archive/data/0", sixteen, 16}};
        b = mzip_build(none, 1, NULL);
        EXPECT_REFUSED(&b, "m.pth", BATON_ERR_FORMAT, "no <name>/data.pkl");
        free(b.bytes);
        mzip_entry two[] = {{"a/data.pkl", pickle.bytes, pickle.len}, {"b/data.pkl", pickle.bytes, pickle.len}};
        b = mzip_build(two, 2, NULL);
        EXPECT_REFUSED(&b, "m.pth", BATON_ERR_FORMAT, "holds both");
        free(b.bytes);
        b = mzip_build(NULL, 0, NULL);
        EXPECT_REFUSED(&b, "m.pth", BATON_ERR_FORMAT, "data.pkl");
        free(b.bytes);
        free(pickle.bytes);
    }

    /* A real torch-layout file (synth): truncated everywhere, and every byte outside the tensor
     * data flipped three ways, never crashes, and refusals name the file. */
    {
        char path[512];
        cli_tmp(path, sizeof path, "flip.pth");
        baton_synth_options o = {.n_layer = 1, .n_embd = 4, .n_vocab = 6, .n_ffn = 8,
                                 .dtype = BATON_BF16, .seed = 3};
        REQUIRE(baton_synth_write(&o, path, NULL) == BATON_OK);
        mbuf s = {0};
        s.bytes = test_read_file(path, &s.len);
        s.cap = s.len;
        REQUIRE(s.bytes != NULL);
        unlink(path);
        CHECK(try_bytes(s.bytes, s.len, "flip.pth") == BATON_OK);
        expect_truncations_refused(&s, "flip.pth");
        baton_tensor_set *set = NULL;
        REQUIRE(baton_tensor_set_from_memory(s.bytes, s.len, "flip.pth", &set, NULL) == BATON_OK);
        unsigned char *is_data = calloc(s.len, 1);
        REQUIRE(is_data != NULL);
        for (size_t i = 0; i < set->n_tensors; i++) {
            const baton_tensor *t = &set->tensors[i];
            memset(is_data + t->file_offset, 1, t->n_elements * 2);
        }
        baton_tensor_set_free(set);
        size_t refused = 0, tried = 0;
        static const unsigned flips[] = {0x01, 0x80, 0xff};
        for (size_t i = 0; i < s.len; i++) {
            if (is_data[i]) continue;
            for (size_t f = 0; f < 3; f++) {
                s.bytes[i] ^= (unsigned char)flips[f];
                refused += try_bytes(s.bytes, s.len, "flip.pth") != BATON_OK;
                tried++;
                s.bytes[i] ^= (unsigned char)flips[f];
            }
        }
        printf("flipped %zu times, %zu refused\n", tried, refused);
        CHECK(refused > tried / 4);
        free(is_data);
        free(s.bytes);
    }
    free(base.bytes);
    return test_result();
}
