// Strongroom console: the passkey ceremonies. Served from the binary; the
// Content-Security-Policy allows no other script. Everything this signs comes
// from the page the server rendered (the challenge is the SHA-256 digest of
// the approval statement), and the server verifies the assertion against the
// statement it makes again from the stored transfer: a page edited before
// signing gets its approval refused.
"use strict";

(function () {
  function fromB64url(s) {
    const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function toB64url(buf) {
    const bytes = new Uint8Array(buf);
    let bin = "";
    for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function post(url, body) {
    const resp = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    let answer = {};
    try {
      answer = await resp.json();
    } catch (e) {
      answer = { message: "the server answered " + resp.status };
    }
    if (!resp.ok) {
      throw new Error((answer.code ? answer.code + ": " : "") + (answer.message || resp.status));
    }
    return answer;
  }

  function say(el, text, failed) {
    el.textContent = text;
    el.className = failed ? "error" : "";
  }

  // Times in the viewer's own zone; UTC stays on hover (the title).
  document.querySelectorAll("time[data-ms]").forEach(function (el) {
    const t = new Date(Number(el.dataset.ms));
    if (!isNaN(t.getTime())) el.textContent = t.toLocaleString();
  });

  // Sign-in with the password and a passkey (instead of the code): the
  // server's one-time challenge, answered by the authenticator, goes in the
  // form with the name and password.
  const passkeyLogin = document.getElementById("passkey-login");
  if (passkeyLogin) {
    const status = document.getElementById("login-status");
    passkeyLogin.addEventListener("click", async function () {
      const form = passkeyLogin.form;
      if (!form.reportValidity()) return;
      passkeyLogin.disabled = true;
      try {
        const c = await post("/ui/login/challenge", {});
        say(status, "Waiting for your passkey…");
        const assertion = await navigator.credentials.get({
          publicKey: {
            challenge: fromB64url(c.challenge),
            rpId: c.rp_id,
            userVerification: "required",
            timeout: 120000,
          },
        });
        const r = assertion.response;
        form.elements.passkey.value = "webauthn:" + toB64url(r.authenticatorData) + "." +
          toB64url(r.clientDataJSON) + "." + toB64url(r.signature);
        form.elements.credential.value = toB64url(assertion.rawId);
        form.elements.totp.value = "";
        form.submit();
      } catch (e) {
        say(status, "No passkey answered: " + e.message, true);
        passkeyLogin.disabled = false;
      }
    });
  }

  const register = document.getElementById("passkey-register");
  if (register) {
    const button = document.getElementById("register-button");
    const status = document.getElementById("register-status");
    button.addEventListener("click", async function () {
      button.disabled = true;
      try {
        const csrf = register.dataset.csrf;
        const options = await post("/ui/passkeys/options", { csrf: csrf });
        const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
        say(status, "Waiting for your authenticator…");
        const credential = await navigator.credentials.create({ publicKey: publicKey });
        const answer = await post("/ui/passkeys/register", {
          csrf: csrf,
          credential: credential.toJSON(),
        });
        document.getElementById("new-approver-key").textContent = answer.approver_key;
        say(status, "Passkey made. Give this approver key to the admins to enroll:");
      } catch (e) {
        say(status, "No passkey was made: " + e.message, true);
      } finally {
        button.disabled = false;
      }
    });
  }

  const vote = document.getElementById("passkey-vote");
  if (vote) {
    const status = document.getElementById("vote-status");
    const buttons = vote.querySelectorAll("button[data-vote]");
    buttons.forEach(function (button) {
      button.addEventListener("click", async function () {
        const choice = button.dataset.vote;
        const d = vote.dataset;
        const challenge = choice === "approve" ? d.challengeApprove : d.challengeReject;
        buttons.forEach(function (b) { b.disabled = true; });
        try {
          say(status, "Waiting for your passkey…");
          const assertion = await navigator.credentials.get({
            publicKey: {
              challenge: fromB64url(challenge),
              rpId: d.rpId,
              allowCredentials: [{ type: "public-key", id: fromB64url(d.credential) }],
              userVerification: "required",
              timeout: 120000,
            },
          });
          const r = assertion.response;
          const signature = "webauthn:" + toB64url(r.authenticatorData) + "." +
            toB64url(r.clientDataJSON) + "." + toB64url(r.signature);
          const answer = await post("/ui/transfers/" + d.transfer + "/vote", {
            csrf: d.csrf,
            vote: choice,
            expires_at_ms: Number(d.expiresAt),
            signature: signature,
            reason: choice === "reject" ? document.getElementById("reject-reason").value : null,
          });
          say(status, (choice === "approve" ? "Approved" : "Rejected") +
            ": the transfer is now " + answer.state + ".");
          vote.dataset.done = answer.state;
        } catch (e) {
          say(status, "Not recorded: " + e.message, true);
          vote.dataset.failed = e.message;
          buttons.forEach(function (b) { b.disabled = false; });
        }
      });
    });
  }
})();
