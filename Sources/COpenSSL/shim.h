#ifndef SSE_KEEPALIVE_COPENSSL_SHIM_H
#define SSE_KEEPALIVE_COPENSSL_SHIM_H

// The probe's TLS client. Only Probe/ProbeTLS.swift imports this.
#include <string.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

// Macros and stack helpers of OpenSSL's headers, as functions Swift can call.

static inline long sse_ssl_set_sni(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name); }

// TLS 1.2 at least; an EOF without close_notify reads as a plain EOF (many
// servers and proxies close that way), not as an error.
static inline void sse_ssl_ctx_setup(SSL_CTX *ctx) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
}

// Keeps the server's own certificate (depth 0) as the SSL's app data while
// it is verified, so a failed check can still name what it was for.
static inline int sse_keep_leaf(int ok, X509_STORE_CTX *store) {
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    if (ssl && cert && X509_STORE_CTX_get_error_depth(store) == 0 && !SSL_get_app_data(ssl)) {
        X509_up_ref(cert);
        SSL_set_app_data(ssl, cert);
    }
    return ok;
}

static inline void sse_ssl_verify_peer(SSL *ssl) { SSL_set_verify(ssl, SSL_VERIFY_PEER, sse_keep_leaf); }

static inline void sse_ssl_free(SSL *ssl) {
    X509 *kept = SSL_get_app_data(ssl);
    if (kept) X509_free(kept);
    SSL_free(ssl);
}

// The peer certificate's DNS names (subjectAltName, else the subject CN),
// comma-separated into out; and its notAfter as text. Empty when unknown.
static inline void sse_peer_names(SSL *ssl, char *out, size_t cap, char *not_after, size_t not_after_cap) {
    out[0] = 0;
    not_after[0] = 0;
    X509 *cert = SSL_get_app_data(ssl);
    if (cert) X509_up_ref(cert); else cert = SSL_get1_peer_certificate(ssl);
    if (!cert) return;
    size_t used = 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names) {
        for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
            const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
            if (name->type != GEN_DNS) continue;
            const char *text = (const char *)ASN1_STRING_get0_data(name->d.dNSName);
            size_t len = (size_t)ASN1_STRING_length(name->d.dNSName);
            if (used + len + 3 >= cap) break;
            if (used) { out[used++] = ','; out[used++] = ' '; }
            memcpy(out + used, text, len);
            used += len;
            out[used] = 0;
        }
        GENERAL_NAMES_free(names);
    }
    if (used == 0) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, out, (int)cap);
    }
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio) {
        if (ASN1_TIME_print(bio, X509_get0_notAfter(cert))) {
            int n = BIO_read(bio, not_after, (int)not_after_cap - 1);
            not_after[n > 0 ? n : 0] = 0;
        }
        BIO_free(bio);
    }
    X509_free(cert);
}

#endif
